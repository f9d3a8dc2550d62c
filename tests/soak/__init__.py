"""The fault and load harness: ``python -m tests.soak [--minutes 3] [--seed N]``.

Two ``sessionlsp serve`` processes share one database; eight clients drive them with random
prompts, compactions, cancels, loads, new sessions and lists while one server at a time is
SIGKILLed and restarted. At the end the harness checks the invariants and prints its counts.

- ``harness.py``: one run, its phases and its report;
- ``actors.py``: server slots (killed and restarted) and the clients;
- ``invariants.py``: what must hold in the database file afterwards;
- ``leaks.py``: searching files and texts for the API key;
- ``servers.py``: starting servers whose every output byte is kept on disk;
- ``test_soak_short.py``: a 20 s run in the normal test suite, and pins of what the soak found.
"""
