#!/usr/bin/env python3
"""Separate every mp3 under data/ through the service at $REST (default localhost:5000)."""

import sys

from scripts.local.sample_client import main

sys.exit(main("*.mp3"))
