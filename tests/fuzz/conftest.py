"""The fuzz campaign is a program (python3 tests/fuzz/campaign.py), not tests: pytest collects nothing here."""

collect_ignore_glob = ["*.py"]
