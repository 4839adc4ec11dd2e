"""Stage A: a threaded chat server and a two-threaded terminal client."""
