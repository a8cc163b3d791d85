from ragged.cli import app

app(prog_name="ragged")
