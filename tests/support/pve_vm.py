"""Clone or delete a QEMU VM through the Proxmox VE API (the tests' stand-in for bpg's VM).

    python pve_vm.py create   # clones the cloud-init template, configures, resizes, starts
    python pve_vm.py delete   # stops and deletes it (a missing VM is not an error)

What the built-in VM template asks of the bpg provider, done with the API calls a real
cluster takes: clone (full or linked, from the template's node), then the VM's config (cores,
CPU type, memory, network device with VLAN, cloud-init: ipconfig0, ciuser, sshkeys, the
cloud-init drive's storage), the boot disk grown on its own slot, the QEMU agent enabled, start.

Credentials come only from the environment, as proxdeck passes them to terraform (see
pve_ct.py, whose Api class this reuses). The values come as PVE_VM_*: NODE, VMID, NAME,
DESCRIPTION, TAGS (comma separated), TEMPLATE_VMID, TEMPLATE_NODE, FULL_CLONE (true/false),
CORES, CPU_TYPE, MEMORY_MIB, DISK_GIB, DISK_INTERFACE, DATASTORE, CLOUDINIT_DATASTORE, BRIDGE,
VLAN_ID (may be empty), IPV4_ADDRESS (dhcp or CIDR), IPV4_GATEWAY (may be empty), CI_USER,
SSH_PUBLIC_KEY. Only stdlib. The token is never printed.

Real guests: with PROXDECK_TEST_GUESTS set (see pve_ct.py), create asks the test's guest rig
to boot a fresh Debian 13 cloud image at the VM's address whose cloud-init reads a NoCloud seed
with what Proxmox writes on the cloud-init drive (the user, the SSH key); delete removes it.
"""

import os
import sys
import urllib.error
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pve_ct  # noqa: E402  (the shared API client)

ApiError = pve_ct.ApiError
env = pve_ct.env


def log(message):
    print('pve_vm: ' + message, flush=True)


def create(api):
    node = env('PVE_VM_NODE')
    vmid = int(env('PVE_VM_VMID'))
    template = int(env('PVE_VM_TEMPLATE_VMID'))
    template_node = env('PVE_VM_TEMPLATE_NODE', node)
    full = env('PVE_VM_FULL_CLONE', 'true') == 'true'
    clone = {'newid': vmid, 'name': env('PVE_VM_NAME'), 'full': 1 if full else 0}
    if full:
        clone['storage'] = env('PVE_VM_DATASTORE')
    if template_node != node:
        clone['target'] = node
    log('cloning template {0} on {1} to VM {2} on {3} ({4} clone)'.format(
        template, template_node, vmid, node, 'full' if full else 'linked'))
    api.wait_task(template_node, api.call(
        'POST', '/nodes/{0}/qemu/{1}/clone'.format(template_node, template), clone))

    ip = env('PVE_VM_IPV4_ADDRESS')
    ipconfig = 'ip={0}'.format(ip)
    gateway = os.environ.get('PVE_VM_IPV4_GATEWAY', '')
    if gateway and ip != 'dhcp':
        ipconfig += ',gw=' + gateway
    net0 = 'virtio,bridge={0}'.format(env('PVE_VM_BRIDGE'))
    vlan = os.environ.get('PVE_VM_VLAN_ID', '')
    if vlan:
        net0 += ',tag=' + vlan
    config = {
        'cores': int(env('PVE_VM_CORES')),
        'cpu': env('PVE_VM_CPU_TYPE'),
        'memory': int(env('PVE_VM_MEMORY_MIB')),
        'net0': net0,
        'ipconfig0': ipconfig,
        'ciuser': env('PVE_VM_CI_USER'),
        # Proxmox wants the keys URL-encoded.
        'sshkeys': urllib.parse.quote(env('PVE_VM_SSH_PUBLIC_KEY').strip(), safe=''),
        'ide2': '{0}:cloudinit'.format(env('PVE_VM_CLOUDINIT_DATASTORE')),
        'agent': 'enabled=1',
        'onboot': 1,
    }
    description = os.environ.get('PVE_VM_DESCRIPTION', '')
    if description:
        config['description'] = description
    tags = [t for t in os.environ.get('PVE_VM_TAGS', '').split(',') if t]
    if tags:
        config['tags'] = ';'.join(tags)
    base = '/nodes/{0}/qemu/{1}'.format(node, vmid)
    log('configuring VM {0} ({1}; {2})'.format(vmid, net0, ipconfig))
    result = api.call('POST', base + '/config', config)
    if isinstance(result, str) and result.startswith('UPID:'):
        api.wait_task(node, result)
    disk = env('PVE_VM_DISK_INTERFACE')
    size = '{0}G'.format(env('PVE_VM_DISK_GIB'))
    log('growing {0} of VM {1} to {2}'.format(disk, vmid, size))
    result = api.call('PUT', base + '/resize', {'disk': disk, 'size': size})
    if isinstance(result, str) and result.startswith('UPID:'):
        api.wait_task(node, result)
    api.wait_task(node, api.call('POST', base + '/status/start'))
    booted = pve_ct.rig_call({
        'op': 'boot', 'kind': 'vm', 'vmid': vmid, 'address': ip, 'hostname': env('PVE_VM_NAME'),
        'ssh_public_key': env('PVE_VM_SSH_PUBLIC_KEY'), 'user': env('PVE_VM_CI_USER'),
    })
    if booted:
        log('booted guest {0} (Debian {1} cloud image) at {2}'.format(
            booted['machine'], booted['release'], ip))
    log('created VM {0} on {1}, running'.format(vmid, node))


def delete(api):
    node = env('PVE_VM_NODE')
    vmid = int(env('PVE_VM_VMID'))
    base = '/nodes/{0}/qemu/{1}'.format(node, vmid)
    removed = pve_ct.rig_call({'op': 'delete', 'vmid': vmid})
    if removed and removed.get('found'):
        log('powered off and removed the guest of VM {0}'.format(vmid))
    try:
        status = api.call('GET', base + '/status/current')
    except ApiError as exc:
        if 'does not exist' in exc.message or exc.status == 404:
            log('VM {0} on {1} is already gone'.format(vmid, node))
            return
        raise
    if status.get('status') == 'running':
        log('stopping VM {0}'.format(vmid))
        api.wait_task(node, api.call('POST', base + '/status/stop'))
    log('deleting VM {0} on {1}'.format(vmid, node))
    api.wait_task(node, api.call('DELETE', base, {'purge': 1}))
    log('deleted VM {0} on {1}'.format(vmid, node))


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ('create', 'delete'):
        raise SystemExit('usage: pve_vm.py create|delete')
    api = pve_ct.Api()
    try:
        (create if sys.argv[1] == 'create' else delete)(api)
    except ApiError as exc:
        raise SystemExit('pve_vm: {0} failed: {1}'.format(sys.argv[1], exc))
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit('pve_vm: {0} failed: {1}'.format(sys.argv[1], exc))


if __name__ == '__main__':
    main()
