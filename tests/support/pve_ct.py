"""Create or delete an LXC container through the Proxmox VE API (the tests' stand-in for bpg).

    python pve_ct.py create   # creates, waits for the task, starts the container
    python pve_ct.py delete   # stops and deletes it (a missing container is not an error)

Credentials come only from the environment, as proxdeck passes them to terraform:
PROXMOX_VE_ENDPOINT (https://host:port[/]), PROXMOX_VE_API_TOKEN (USER@REALM!ID=SECRET),
PROXMOX_VE_INSECURE (true/1 skips verification) and SSL_CERT_FILE (the CA to verify with).
The values come from the provisioner's environment map, as PVE_CT_*: NODE, VMID, HOSTNAME,
DESCRIPTION, TAGS (comma separated), CORES, MEMORY_MIB, SWAP_MIB, DISK_GIB, DATASTORE,
OS_TEMPLATE, OS_TYPE, BRIDGE, VLAN_ID (may be empty), IPV4_ADDRESS (dhcp or CIDR), IPV4_GATEWAY
(may be empty), SSH_PUBLIC_KEY. Only stdlib: any python3 runs it. The token is never printed.

Real guests: when PROXDECK_TEST_GUESTS names the socket of the test's guest rig
(tests/support/guests.rs), create also asks the rig to boot a fresh Debian guest at the
container's address (after the container exists on the fake), and delete asks it to power the
guest off and remove it (before the container goes from the fake).
"""

import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TASK_DEADLINE_SECS = 120
REQUEST_TIMEOUT_SECS = 30
# Booting a guest can take a while on a busy machine (the rig's root filesystem is prebuilt).
RIG_TIMEOUT_SECS = 600


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__('HTTP {0}: {1}'.format(status, message))
        self.status = status
        self.message = message


def log(message):
    print('pve_ct: ' + message, flush=True)


def env(name, default=None):
    value = os.environ.get(name)
    if value is None or value == '':
        if default is None:
            raise SystemExit('pve_ct: missing environment variable ' + name)
        return default
    return value


class Api(object):
    def __init__(self):
        endpoint = env('PROXMOX_VE_ENDPOINT').rstrip('/')
        if endpoint.endswith('/api2/json'):
            endpoint = endpoint[:-len('/api2/json')]
        self.base = endpoint + '/api2/json'
        self.token = env('PROXMOX_VE_API_TOKEN')
        insecure = os.environ.get('PROXMOX_VE_INSECURE', '').lower() in ('1', 'true', 'yes')
        if insecure:
            self.ctx = ssl._create_unverified_context()
        else:
            self.ctx = ssl.create_default_context(cafile=os.environ.get('SSL_CERT_FILE') or None)

    def call(self, method, path, params=None):
        url = self.base + path
        data = None
        if params:
            encoded = urllib.parse.urlencode(params)
            if method in ('GET', 'DELETE'):
                url += '?' + encoded
            else:
                data = encoded.encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header('Authorization', 'PVEAPIToken=' + self.token)
        if data is not None:
            request.add_header('Content-Type', 'application/x-www-form-urlencoded')
        try:
            with urllib.request.urlopen(request, context=self.ctx, timeout=REQUEST_TIMEOUT_SECS) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode('utf-8', 'replace')
            try:
                parsed = json.loads(detail)
                detail = parsed.get('message') or json.dumps(parsed.get('errors') or parsed)
            except ValueError:
                pass
            raise ApiError(exc.code, (exc.reason or '') + ' ' + str(detail).strip())
        return json.loads(body or b'{}').get('data')

    def wait_task(self, node, upid):
        deadline = time.monotonic() + TASK_DEADLINE_SECS
        path = '/nodes/{0}/tasks/{1}/status'.format(node, urllib.parse.quote(upid, safe=''))
        while True:
            status = self.call('GET', path)
            if status.get('status') == 'stopped':
                if status.get('exitstatus') != 'OK':
                    raise SystemExit('pve_ct: task {0} failed: {1}'.format(upid, status.get('exitstatus')))
                return
            if time.monotonic() > deadline:
                raise SystemExit('pve_ct: task {0} still running after {1}s'.format(upid, TASK_DEADLINE_SECS))
            time.sleep(0.2)


def rig_call(request):
    """One request to the test's real-guest rig; None when no rig is in use."""
    path = os.environ.get('PROXDECK_TEST_GUESTS', '')
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(RIG_TIMEOUT_SECS)
    try:
        conn.connect(path)
        conn.sendall((json.dumps(request) + '\n').encode())
        answer = b''
        while not answer.endswith(b'\n'):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        conn.close()
    result = json.loads(answer.decode() or '{}')
    if not result.get('ok'):
        raise SystemExit('{0}: the guest rig refused {1}: {2}'.format(
            os.path.basename(sys.argv[0]), request.get('op'), result.get('error')))
    return result


def create(api):
    node = env('PVE_CT_NODE')
    vmid = int(env('PVE_CT_VMID'))
    ip = env('PVE_CT_IPV4_ADDRESS')
    net0 = 'name=eth0,bridge={0},ip={1}'.format(env('PVE_CT_BRIDGE'), ip)
    gateway = os.environ.get('PVE_CT_IPV4_GATEWAY', '')
    if gateway and ip != 'dhcp':
        net0 += ',gw=' + gateway
    vlan = os.environ.get('PVE_CT_VLAN_ID', '')
    if vlan:
        net0 += ',tag=' + vlan
    params = {
        'vmid': vmid,
        'hostname': env('PVE_CT_HOSTNAME'),
        'ostemplate': env('PVE_CT_OS_TEMPLATE'),
        'ostype': env('PVE_CT_OS_TYPE', 'debian'),
        'rootfs': '{0}:{1}'.format(env('PVE_CT_DATASTORE'), env('PVE_CT_DISK_GIB')),
        'cores': int(env('PVE_CT_CORES')),
        'memory': int(env('PVE_CT_MEMORY_MIB')),
        'swap': int(env('PVE_CT_SWAP_MIB', '0')),
        'net0': net0,
        'unprivileged': 1,
    }
    description = os.environ.get('PVE_CT_DESCRIPTION', '')
    if description:
        params['description'] = description
    tags = [t for t in os.environ.get('PVE_CT_TAGS', '').split(',') if t]
    if tags:
        params['tags'] = ';'.join(tags)
    key = os.environ.get('PVE_CT_SSH_PUBLIC_KEY', '')
    if key:
        params['ssh-public-keys'] = key
    log('creating CT {0} on {1} ({2})'.format(vmid, node, net0))
    api.wait_task(node, api.call('POST', '/nodes/{0}/lxc'.format(node), params))
    api.wait_task(node, api.call('POST', '/nodes/{0}/lxc/{1}/status/start'.format(node, vmid)))
    booted = rig_call({
        'op': 'boot', 'kind': 'lxc', 'vmid': vmid, 'os_template': params['ostemplate'],
        'address': ip, 'hostname': params['hostname'], 'ssh_public_key': key,
    })
    if booted:
        log('booted guest {0} (Debian {1}) at {2}'.format(booted['machine'], booted['release'], ip))
    log('created CT {0} on {1}, running'.format(vmid, node))


def delete(api):
    node = env('PVE_CT_NODE')
    vmid = int(env('PVE_CT_VMID'))
    base = '/nodes/{0}/lxc/{1}'.format(node, vmid)
    removed = rig_call({'op': 'delete', 'vmid': vmid})
    if removed and removed.get('found'):
        log('powered off and removed the guest of CT {0}'.format(vmid))
    try:
        status = api.call('GET', base + '/status/current')
    except ApiError as exc:
        if 'does not exist' in exc.message or exc.status == 404:
            log('CT {0} on {1} is already gone'.format(vmid, node))
            return
        raise
    if status.get('status') == 'running':
        log('stopping CT {0}'.format(vmid))
        api.wait_task(node, api.call('POST', base + '/status/stop'))
    log('deleting CT {0} on {1}'.format(vmid, node))
    api.wait_task(node, api.call('DELETE', base, {'purge': 1}))
    log('deleted CT {0} on {1}'.format(vmid, node))


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ('create', 'delete'):
        raise SystemExit('usage: pve_ct.py create|delete')
    api = Api()
    try:
        (create if sys.argv[1] == 'create' else delete)(api)
    except ApiError as exc:
        raise SystemExit('pve_ct: {0} failed: {1}'.format(sys.argv[1], exc))
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit('pve_ct: {0} failed: {1}'.format(sys.argv[1], exc))


if __name__ == '__main__':
    main()
