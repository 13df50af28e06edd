.PHONY: install test lint docs bench

install:
	python -m pip install -e '.[dev]'

test:
	python -m pytest

lint:
	ruff check .
	ruff format --check .
	mypy

docs:
	python -m tracetag.cli.docs

bench:
	python benchmarks/run.py
