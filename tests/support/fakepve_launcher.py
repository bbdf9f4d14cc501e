"""Start fakepve for proxdeck's integration tests, with a control channel on stdin.

    python fakepve_launcher.py --host 127.0.0.9 --dir /tmp/x [--time-scale 0]

The API token to register comes from the environment, never argv:
FAKEPVE_TOKEN = "USER@REALM!ID=SECRET"; FAKEPVE_PASSWORD (optional) is root@pam's password
for ticket logins. The launcher writes the certificate (which clients use as their CA file) to
DIR/fakepve.crt, listens on HOST with a port the system picks, prints
"fakepve listening on https://HOST:PORT" when ready, and stays up until its stdin closes or it
is killed.

Control channel: each line on stdin is one JSON object {"op": NAME, ...arguments}; the answer
is one line on stdout, "ctl " followed by {"ok": true, "result": ...} or
{"ok": false, "error": "..."}. The ops (see OPS below) reach fakepve's own Python API: faults
(fail, slow_network, flaky_network, revoke_tickets, hold_config_lock, lock, set_node_offline),
the cluster's shape (nodes with their own usage figures, storages, guests, tokens, users,
ACLs) and what the fake saw (requests, guest state). Secrets given here (token secrets,
passwords) travel on stdin, never argv.
"""

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import sys
import threading

from aiohttp import web
from fakepve.certs import make_cert
from fakepve.lxc import FakeCt
from fakepve.server import FakePve

# The OS templates the tests' configs name (Debian 13 is proxdeck's default): put on the
# 'local' storage so preflight finds them.
OS_TEMPLATES = ('debian-12-standard_12.7-1_amd64.tar.zst', 'debian-13-standard_13.1-2_amd64.tar.zst')
GIB = 1024 ** 3
MIB = 1024 ** 2


class TestPve(FakePve):
    """fakepve whose nodes can have their own usage figures (fakepve gives every node the same)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # node -> {'mem': bytes, 'maxmem': bytes, 'disk': ..., 'maxdisk': ..., 'maxcpu': n, 'cpu': f}
        self.node_usage = {}

    def _patch_nodes(self, response):
        body = json.loads(response.text)
        for item in body.get('data') or []:
            if item.get('type') == 'node' and item.get('status') == 'online':
                item.update(self.node_usage.get(item.get('node'), {}))
        return web.json_response(body, status=response.status)

    async def _nodes(self, request):
        return self._patch_nodes(await super()._nodes(request))

    async def _resources(self, request):
        return self._patch_nodes(await super()._resources(request))


def guest_of(pve, vmid):
    guest = pve.guest(int(vmid))
    if guest is None:
        raise KeyError('no guest {0}'.format(vmid))
    return guest


def apply_guest(pve, args):
    """Set attributes, config keys and the agent of a guest."""
    guest = guest_of(pve, args['vmid'])
    for key, value in (args.get('attrs') or {}).items():
        if key == 'status':
            guest.status = value
            if hasattr(guest, 'qmpstatus'):
                guest.qmpstatus = value
        else:
            setattr(guest, key, value)
    for key, value in (args.get('config') or {}).items():
        if value is None:
            guest.config.pop(key, None)
        else:
            guest.config[key] = value
    if 'agent' in args:
        guest.agent = args['agent']
    return view_guest(pve, guest)


def view_guest(pve, guest):
    kind = 'lxc' if guest in pve.cts else 'qemu'
    return {'vmid': guest.vmid, 'type': kind, 'node': guest.node, 'name': guest.name,
            'status': guest.status, 'lock': guest.lock, 'config': dict(guest.config)}


def add_guest(pve, args):
    kind = args.get('type', 'lxc')
    vmid = int(args['vmid'])
    node = args.get('node', 'pve1')
    status = args.get('status', 'running')
    config = dict(args.get('config') or {})
    if kind == 'lxc':
        guest = pve.add_ct(vmid, name=args.get('name'), node=node, status=status, config=config,
                           template=bool(args.get('template')))
    else:
        config.setdefault('memory', 1024)
        config.setdefault('cores', 2)
        config.setdefault('scsi0', 'local-lvm:vm-{0}-disk-0,size=16G'.format(vmid))
        guest = pve.add_vm(vmid, args.get('name') or 'vm{0}'.format(vmid), node=node, status=status,
                           config=config, template=bool(args.get('template')))
        if 'agent' in args:
            guest.agent = args['agent']
    return view_guest(pve, guest)


def remove_guest(pve, args):
    guest = guest_of(pve, args['vmid'])
    if guest in pve.cts:
        pve._drop(guest)
    else:
        pve.vms.remove(guest)
    return None


def add_guests(pve, args):
    """count guests from vmid `start`, spread over `nodes`, alternating LXC/QEMU and running/stopped.

    Linear in count, for clusters of 100,000 guests: the range is checked against the vmids
    in use once (fakepve's add_ct looks through every container for each new one)."""
    nodes = args.get('nodes') or ['pve1']
    for node in nodes:
        pve.nodes.setdefault(node, {'online': True})
    start = int(args.get('start', 1000))
    count = int(args['count'])
    taken = set(g.vmid for g in pve.vms) | set(c.vmid for c in pve.cts)
    clash = sorted(taken.intersection(range(start, start + count)))
    if clash:
        raise ValueError('vmids in use: {0}'.format(clash[:10]))
    prefix = args.get('prefix', 'guest')
    for i in range(count):
        vmid = start + i
        name = '{0}-{1}'.format(prefix, vmid)
        node = nodes[i % len(nodes)]
        status = 'running' if i % 3 else 'stopped'
        if i % 2 == 0:
            ct = FakeCt(vmid, name=name, node=node, status=status, config={})
            pve.cts.append(ct)
            if status == 'running':
                ct.pid = next(pve._ct_pids)
        else:
            pve.add_vm(vmid, name, node=node, status=status,
                       config={'memory': 1024, 'cores': 2,
                               'scsi0': 'local-lvm:vm-{0}-disk-0,size=16G'.format(vmid)})
    return {'count': count}


def add_node(pve, args):
    name = args['name']
    pve.add_node(name, online=args.get('online', True))
    usage = {}
    for key in ('mem', 'maxmem', 'disk', 'maxdisk'):
        if key + '_gib' in args:
            usage[key] = int(args[key + '_gib'] * GIB)
    for key in ('maxcpu', 'cpu', 'uptime'):
        if key in args:
            usage[key] = args[key]
    if usage:
        pve.node_usage[name] = usage
    return None


def set_storage(pve, args):
    name = args['name']
    if args.get('delete'):
        pve.storages.pop(name, None)
        return None
    store = pve.storages.setdefault(name, {'type': 'dir', 'active': 1, 'content': 'images,rootdir',
                                           'files': set(), 'path': '/srv/' + name})
    store.update(args.get('attrs') or {})
    return dict((k, v) for k, v in store.items() if k not in ('files', 'volumes'))


def requests(pve, args):
    method = args.get('method')
    suffix = args.get('suffix', '')
    seen = [(m, p) for (m, p, _) in pve.requests
            if (method is None or m == method) and p.endswith(suffix)]
    return {'count': len(seen), 'requests': [m + ' ' + p for m, p in seen[-50:]]}


def fingerprint(pve, args):
    with open(os.path.join(args['dir'], 'fakepve.crt')) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))


async def later(pve, args):
    """Apply a guest change after `delay` real seconds (an address that appears late)."""
    async def run():
        await asyncio.sleep(float(args['delay']))
        apply_guest(pve, args)
    asyncio.ensure_future(run())
    return None


def grant(pve, args):
    if args.get('reset'):
        pve.acl = {}
        return None
    pve.grant(args['user'], args['path'], *args.get('privs', []))
    return None


OPS = {
    'ping': lambda pve, a: 'pong',
    # PVE's time and tickets: time_scale (0: tasks end at once), ticket_ttl, lock_wait, ...
    'set': lambda pve, a: [setattr(pve, k, v) for k, v in a['attrs'].items()] and None,
    'fail': lambda pve, a: pve.fail(a['method'], a['suffix'], status=a.get('status'), message=a.get('message'),
                                    html=bool(a.get('html')), error=a.get('error'), times=a.get('times')),
    'clear_failures': lambda pve, a: pve.failures.clear(),
    'slow_network': lambda pve, a: pve.slow_network(a['latency'], a.get('jitter', 0.0), a.get('node')),
    'flaky_network': lambda pve, a: pve.flaky_network(a.get('drop_rate', 0.0), a.get('hang_rate', 0.0),
                                                      a.get('hang_secs', 120), a.get('seed')),
    'revoke_tickets': lambda pve, a: pve.revoke_tickets(),
    'release_config_lock': lambda pve, a: pve.release_config_lock(int(a['vmid'])),
    'lock': lambda pve, a: pve.snapshot_lock(int(a['vmid']), a.get('lock', 'backup')),
    'unlock': lambda pve, a: pve.unlock(int(a['vmid'])),
    'set_node_offline': lambda pve, a: pve.set_node_offline(a['node'], a.get('offline', True)),
    'add_node': add_node,
    'add_guest': add_guest,
    'add_guests': add_guests,
    'remove_guest': remove_guest,
    'set_guest': apply_guest,
    'guest': lambda pve, a: view_guest(pve, guest_of(pve, a['vmid'])),
    'storage': set_storage,
    'store_file': lambda pve, a: pve.store_file(a['storage'], a['name'], int(a.get('size', MIB)),
                                                content=a.get('content', 'vztmpl')),
    'add_token': lambda pve, a: pve.apitokens.__setitem__(a['tokenid'], a['secret']),
    'add_user': lambda pve, a: pve.users.__setitem__(a['userid'], a['password']),
    'grant': grant,
    'requests': requests,
    'clear_requests': lambda pve, a: pve.requests.clear(),
    'fingerprint': fingerprint,
}
ASYNC_OPS = {
    'hold_config_lock': lambda pve, a: pve.hold_config_lock(int(a['vmid']), a.get('secs')),
    'later': later,
}


async def control(pve, line, cert_dir):
    try:
        args = json.loads(line)
        op = args.pop('op')
        args.setdefault('dir', cert_dir)
        if op in ASYNC_OPS:
            result = await ASYNC_OPS[op](pve, args)
        elif op in OPS:
            result = OPS[op](pve, args)
        else:
            raise KeyError('unknown op {0!r}; known: {1}'.format(op, ', '.join(sorted(OPS) + sorted(ASYNC_OPS))))
        answer = {'ok': True, 'result': result}
    except Exception as e:  # noqa: BLE001 - every failure goes back to the test as a message
        answer = {'ok': False, 'error': '{0}: {1}'.format(type(e).__name__, e)}
    try:
        print('ctl ' + json.dumps(answer, default=str), flush=True)
    except (OSError, ValueError):
        pass


def read_stdin(loop, pve, cert_dir, done):
    """Run each control line on the event loop; set done once stdin reaches EOF."""
    try:
        for raw in sys.stdin.buffer:
            line = raw.decode('utf-8', 'replace').strip()
            if not line:
                continue
            future = asyncio.run_coroutine_threadsafe(control(pve, line, cert_dir), loop)
            future.result()
    except (OSError, ValueError, RuntimeError):
        pass
    loop.call_soon_threadsafe(done.set)


async def serve(args):
    token = os.environ.get('FAKEPVE_TOKEN', '')
    tokenid, eq, secret = token.partition('=')
    if not eq or '!' not in tokenid or not secret:
        print('fakepve_launcher: FAKEPVE_TOKEN must be USER@REALM!ID=SECRET', file=sys.stderr, flush=True)
        sys.exit(2)
    pve = TestPve(user='root@pam', password=os.environ.get('FAKEPVE_PASSWORD', 'secret'),
                  host=args.host, port=0)
    pve.time_scale = args.time_scale
    pve.apitokens[tokenid] = secret
    for name in OS_TEMPLATES:
        pve.store_file('local', name, 128 * MIB, content='vztmpl')
    os.makedirs(args.dir, exist_ok=True)
    certfile, keyfile, _ = make_cert(args.dir, hosts=(args.host,))
    await pve.start(certfile, keyfile)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    threading.Thread(target=read_stdin, args=(loop, pve, args.dir, done), daemon=True).start()
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
