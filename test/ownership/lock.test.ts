/**
 * The state-directory lock under a race (docs/design.md, "Ownership"): several real processes
 * start at once against one stale `espm.lock` (its pid dead) — exactly one takes it over, the
 * others are refused naming the winner, round after round.
 */
import { mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { StateLock, StateLockedError } from '../../src/ownership/lock.js';

const CONTENDER = fileURLToPath(new URL('./lock-contender.ts', import.meta.url));
const PROCESSES = 6;
const ROUNDS = 20;

/** A contender process and its answers, line by line. */
class Contender {
  private readonly lines: string[] = [];
  private waiting: ((line: string) => void) | undefined;
  private readonly reader: Interface;

  constructor(readonly child: ResultPromise<{ stdin: 'pipe'; stdout: 'pipe'; stderr: 'inherit'; reject: false }>) {
    this.reader = createInterface({ input: child.stdout });
    this.reader.on('line', (line) => {
      if (this.waiting === undefined) this.lines.push(line);
      else {
        const resolve = this.waiting;
        this.waiting = undefined;
        resolve(line);
      }
    });
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  next(): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }
}

describe('state-directory lock: takeover of a stale lock', () => {
  let dir: string;
  let contenders: Contender[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'espm-lock-'));
    contenders = Array.from(
      { length: PROCESSES },
      () => new Contender(execa(process.execPath, ['--import', 'tsx', CONTENDER], { stdin: 'pipe', stdout: 'pipe', stderr: 'inherit', reject: false })),
    );
  });
  afterAll(async () => {
    for (const c of contenders) c.child.stdin.end();
    await Promise.all(contenders.map((c) => c.child));
    await rm(dir, { recursive: true, force: true });
  });

  it(`${PROCESSES} processes racing for one dead holder's lock: exactly one wins, ${ROUNDS} rounds in a row`, async () => {
    const pids = contenders.map((c) => c.child.pid!);
    for (let round = 0; round < ROUNDS; round += 1) {
      const dead = (await execa('/bin/sh', ['-c', 'echo $$'])).stdout.trim();
      await writeFile(join(dir, 'espm.lock'), `${dead}\n`);
      for (const c of contenders) c.send(`acquire ${dir}`);
      const answers = await Promise.all(contenders.map((c) => c.next()));
      const winners = answers.flatMap((a, i) => (a === 'won' ? [i] : []));
      expect({ round, winners: winners.length }).toEqual({ round, winners: 1 });
      const winner = winners[0]!;
      const winnerPid = String(pids[winner]);
      expect((await readFile(join(dir, 'espm.lock'), 'utf8')).trim()).toBe(winnerPid);
      expect(answers.filter((a) => a !== 'won')).toEqual(Array(PROCESSES - 1).fill(`locked ${winnerPid}`));
      contenders[winner]!.send('release');
      expect(await contenders[winner]!.next()).toBe('released');
      expect(await readdir(dir)).toEqual([]); // no lock, claim or temp file left behind
    }
  }, 120_000);

  /** A pid that no longer runs. */
  async function deadPid(): Promise<string> {
    return (await execa('/bin/sh', ['-c', 'echo $$'])).stdout.trim();
  }

  /** The claim name of the takeover of the lock file now in `dir` (see src/ownership/lock.ts). */
  async function claimOf(lockDir: string, n: number): Promise<string> {
    const s = await stat(join(lockDir, 'espm.lock'), { bigint: true });
    return join(lockDir, `espm.lock.takeover-${s.ino}-${s.mtimeNs}.${n}`);
  }

  it('takes over when a process died mid-takeover (its claim left behind), and sweeps the leftovers', async () => {
    const own = await mkdtemp(join(tmpdir(), 'espm-lock-'));
    try {
      await writeFile(join(own, 'espm.lock'), `${await deadPid()}\n`);
      await writeFile(await claimOf(own, 0), `${await deadPid()}\n`);
      await writeFile(join(own, `espm.lock.${await deadPid()}.0123456789ab.tmp`), '1\n');
      const lock = await StateLock.acquire(own);
      expect((await readFile(join(own, 'espm.lock'), 'utf8')).trim()).toBe(String(process.pid));
      expect(await readdir(own)).toEqual(['espm.lock']);
      await lock.release();
      expect(await readdir(own)).toEqual([]);
    } finally {
      await rm(own, { recursive: true, force: true });
    }
  });

  it('waits while a live process holds the claim, then is refused by the lock it took', async () => {
    const own = await mkdtemp(join(tmpdir(), 'espm-lock-'));
    const other = execa('/bin/sleep', ['30']);
    try {
      await writeFile(join(own, 'espm.lock'), `${await deadPid()}\n`);
      const claim = await claimOf(own, 0);
      await writeFile(claim, `${other.pid}\n`);
      const attempt = StateLock.acquire(own);
      await new Promise((resolve) => setTimeout(resolve, 300));
      // The other process finishes its takeover: its lock in place, its claim gone.
      await writeFile(join(own, 'espm.lock'), `${other.pid}\n`);
      await unlink(claim);
      await expect(attempt).rejects.toEqual(new StateLockedError(join(own, 'espm.lock'), other.pid!));
    } finally {
      other.kill();
      await other.catch(() => undefined);
      await rm(own, { recursive: true, force: true });
    }
  });
});
