"""Start fakepve for proxdeck's integration tests.

    python fakepve_launcher.py --host 127.0.0.9 --dir /tmp/x [--time-scale 0]

The API token to register comes from the environment, never argv:
FAKEPVE_TOKEN = "USER@REALM!ID=SECRET". The launcher writes the certificate (which clients
use as their CA file) to DIR/fakepve.crt, listens on HOST with a port the system picks, prints
"fakepve listening on https://HOST:PORT" when ready, and stays up until its stdin closes or it
is killed.
"""

import argparse
import asyncio
import os
import sys
import threading

from fakepve.certs import make_cert
from fakepve.server import FakePve

# The OS template the tests' config names: put on the 'local' storage so preflight finds it.
OS_TEMPLATES = ('debian-12-standard_12.7-1_amd64.tar.zst',)


def watch_stdin(loop, done):
    """Set done once stdin reaches EOF (the test process closed it or died)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    loop.call_soon_threadsafe(done.set)


async def serve(args):
    token = os.environ.get('FAKEPVE_TOKEN', '')
    tokenid, eq, secret = token.partition('=')
    if not eq or '!' not in tokenid or not secret:
        print('fakepve_launcher: FAKEPVE_TOKEN must be USER@REALM!ID=SECRET', file=sys.stderr, flush=True)
        sys.exit(2)
    pve = FakePve(user='root@pam', password=os.environ.get('FAKEPVE_PASSWORD', 'secret'),
                  host=args.host, port=0)
    pve.time_scale = args.time_scale
    pve.apitokens[tokenid] = secret
    for name in OS_TEMPLATES:
        pve.store_file('local', name, 128 * 1024 ** 2, content='vztmpl')
    os.makedirs(args.dir, exist_ok=True)
    certfile, keyfile, _ = make_cert(args.dir, hosts=(args.host,))
    await pve.start(certfile, keyfile)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    threading.Thread(target=watch_stdin, args=(loop, done), daemon=True).start()
    print('fakepve listening on {0}'.format(pve.url), flush=True)
    try:
        await done.wait()
    finally:
        await pve.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--host', required=True)
    parser.add_argument('--dir', required=True, help='where fakepve.crt and fakepve.key are written')
    parser.add_argument('--time-scale', type=float, default=0.0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
