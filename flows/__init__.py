"""The process flows as data (``defs/``), and the pure code that loads them and answers what a
lot may do next."""
