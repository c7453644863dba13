"""The ``probe`` command line: parses arguments and calls one library function per command."""
