/**
 * Runs once before the test files. As root on a Debian machine, installs the NAT lab's Debian
 * packages when any is missing (test/lab/install-deps.sh is idempotent and only installs what is
 * missing). Without root, says which suites will not run and how to run them; in CI those suites
 * then fail instead of being skipped (see test/helpers/lab.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export default function setup(): void {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const debian = existsSync('/usr/bin/dpkg-query');
  if (!debian) return;
  const check = spawnSync('bash', ['test/lab/install-deps.sh', '--check'], { encoding: 'utf8' });
  if (check.status === 0) return;
  if (!isRoot) {
    process.stderr.write(
      `\n[p2pd tests] ${check.stdout.trim()}\n` +
        '[p2pd tests] the network-namespace / NAT-lab suites need root and those packages; they will not run here.\n' +
        '[p2pd tests] run them with: sudo bash test/lab/install-deps.sh && sudo npm test\n\n',
    );
    return;
  }
  process.stderr.write('[p2pd tests] installing the NAT lab packages (test/lab/install-deps.sh)…\n');
  const r = spawnSync('bash', ['test/lab/install-deps.sh'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) process.stderr.write('[p2pd tests] install-deps.sh failed: the lab suites will fail\n');
}
