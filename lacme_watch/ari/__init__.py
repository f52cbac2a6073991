"""ACME Renewal Information (RFC 9773): ask each certificate's own CA when to renew it.

certid.py (the identifier), window.py (answers and the pure decision), client.py
(HTTP to the CA, bounded), directories.py (which CA a certificate came from),
records.py (its tables in the state database), rounds.py (one pass's ARI round).
"""
