"""Row shapes and pure state transitions of every Faust table.

Each module names one table (its name is stable: it is the changelog topic's name) and holds
the functions that turn (row, input) into (new row, outputs). No I/O here: the agents in
``topologies/`` read a row, call these, write the row back and produce the outputs.
"""
