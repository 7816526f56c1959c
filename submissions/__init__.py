"""Submission files: write them in the competition's format, score them, upload them with the kaggle client.

This folder also holds the written CSVs (gitignored).
"""
