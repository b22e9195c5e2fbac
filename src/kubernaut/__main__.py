from kubernaut.cli import main

main()
