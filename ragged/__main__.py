from ragged.cli import app

# The guard matters: PDF parsing runs in spawned worker processes, which import this module.
if __name__ == "__main__":
    app(prog_name="ragged")
