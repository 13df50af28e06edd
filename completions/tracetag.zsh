#compdef tracetag

_tracetag_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _TRACETAG_COMPLETE=complete_zsh tracetag)
}

compdef _tracetag_completion tracetag
