"""Compiled automata: byte DFAs, the grammar IR, the parser, token masks and the matcher."""
