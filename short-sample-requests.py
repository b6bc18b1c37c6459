#!/usr/bin/env python3
"""Separate only data/short*.mp3 through the service at $REST (default localhost:5000)."""

import sys

from scripts.local.sample_client import main

sys.exit(main("short*.mp3"))
