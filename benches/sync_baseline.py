"""The baseline `cargo bench --bench scale` compares `proxdeck sync` with: fetch the cluster's
guests from the Proxmox API and insert them into SQLite in one transaction, nothing else.

    python sync_baseline.py URL CA_FILE DB_PATH      (the API token in PVE_TOKEN)

Prints how many guests it stored.
"""

import json
import os
import sqlite3
import ssl
import sys
import urllib.request


def main():
    url, ca_file, db_path = sys.argv[1:4]
    context = ssl.create_default_context(cafile=ca_file)
    request = urllib.request.Request(
        url.rstrip('/') + '/api2/json/cluster/resources?type=vm',
        headers={'Authorization': 'PVEAPIToken=' + os.environ['PVE_TOKEN']})
    with urllib.request.urlopen(request, context=context, timeout=120) as answer:
        guests = json.load(answer)['data']
    db = sqlite3.connect(db_path)
    db.execute('PRAGMA journal_mode=WAL')
    db.execute('CREATE TABLE IF NOT EXISTS guests (vmid INTEGER PRIMARY KEY, type TEXT, node TEXT, '
               'name TEXT, status TEXT, maxcpu INTEGER, maxmem INTEGER, maxdisk INTEGER)')
    with db:
        db.executemany('INSERT INTO guests VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                       [(g['vmid'], g['type'], g.get('node'), g.get('name'), g.get('status'),
                         g.get('maxcpu'), g.get('maxmem'), g.get('maxdisk')) for g in guests])
    print(len(guests))


if __name__ == '__main__':
    main()
