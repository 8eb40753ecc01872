"""Export: every stored sample pushed, at least once, to OTLP/HTTP and remote-write receivers.

config.py (the `[[export]]` entries) and cursor.py import no protocol library; otlp.py and
remote_write.py load protobuf/cramjam and are imported only when such an exporter opens.
"""
