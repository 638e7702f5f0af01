from meshctl.cli.main import run

run()
