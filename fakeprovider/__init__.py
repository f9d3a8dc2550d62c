"""Fake model providers, shared by the tests, the soak harness and the benchmarks.

* :mod:`fakeprovider.openai_server`: a loopback OpenAI-compatible Chat Completions server
  (stdlib only), scripted step by step; real ``sessionlsp serve`` processes point their base URL
  at it, and ``python -m fakeprovider.openai_server`` runs it on its own (the VS Code unit tests
  and the benchmarks run it in a process of its own).
* :mod:`fakeprovider.summarizer`: an in-process summarizer that streams a fixed summary, for the
  compaction engine without any provider.

They live outside ``tests/`` because they are products of their own: the benchmarks must not
depend on the test suite's private helpers.
"""
