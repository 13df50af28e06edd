.PHONY: install test lint docs bench

install:
	python -m pip install -e '.[dev]'

test:
	python -m pytest

lint:
	ruff check .
	ruff format --check .
	mypy
	mypy --strict tracetag/filters tracetag/query.py tracetag/tags.py tracetag/model.py tracetag/backend.py

docs:
	python -m tracetag.cli.docs

bench:
	python benchmarks/run.py
