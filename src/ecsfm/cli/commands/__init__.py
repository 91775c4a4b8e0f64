"""One module per ``ecsfm`` command: ``add_parser(subparsers)`` registers its arguments, ``run(args)``
calls one library function, prints and returns the exit status (``WRITES = "file"`` where
``--out`` names a file rather than a folder)."""
