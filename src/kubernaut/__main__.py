from kubernaut.cli import app

app(prog_name="kubernaut")
