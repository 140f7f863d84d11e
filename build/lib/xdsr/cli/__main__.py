from xdsr.cli.main import app

app(prog_name="xdsr")
