"""The command-line client `micro-demucs`: a client of the HTTP API, nothing more.

It imports nothing from the services (rest/, worker/, common/): it speaks only HTTP.
"""
