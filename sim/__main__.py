"""``python -m sim``: the simulator's command line (sim/cli.py, docs/simulator.md)."""

from sim.cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m sim")
