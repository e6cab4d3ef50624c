"""`python -m wit_builder.cli` (what `torchrun -m wit_builder.cli train` runs)."""

from wit_builder.cli import app

if __name__ == "__main__":
    app()
