"""Stage C: the chat server of stage A, running on the proactor of stage B."""
