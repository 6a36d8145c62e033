"""`python -m blindstore` is the `blindstore` command."""

from blindstore.cli.main import main

main()
