#!/usr/bin/env python3
"""A static HTTPS server on loopback for a provider network mirror (Terraform accepts only
https:// mirrors): serves --root with the certificate --cert and key --key on 127.0.0.1 at a
free port, which it prints on its first line, until killed.

usage: https_mirror.py --root DIR --cert CERT.pem --key KEY.pem
"""
import argparse
import functools
import http.server
import ssl
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=args.root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
