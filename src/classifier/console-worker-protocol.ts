/**
 * The console worker's wire protocol (TypeScript side; the Ruby side is
 * `CONSOLE_WORKER_SOURCE` in src/classifier/console-worker-source.ts): request framing,
 * answer decoding, request ids. The tasks' own stdout/stderr are captured per task inside the
 * worker and never reach the channel. Every frame starts with an ASCII header line and counts
 * its payload in bytes, so payloads may hold any byte (JSON is not used: Ruby 1.8.7's standard
 * library has no JSON):
 *
 * ```
 * request: "@espm <task|refresh|quit> <id> <n>\n" then n fields, each "<bytes>\n" <data> "\n"
 *          task fields: the task name, then rake's argv elements ("key=value")
 * answer:  "@espm <kind> <id> <code> <outBytes> <errBytes>\n" <out> <err> "\n"
 *          ready (id 0) · started <id> · done <id> <exit status> · refreshed <id> <0|1|2> · bye <id>
 * ```
 *
 * Every request carries a fresh id, echoed by its answers; only one request is outstanding at
 * a time, and any answer that is not the one expected next (wrong kind or id) ends the worker
 * (src/classifier/console-worker.ts). Source of truth: docs/design.md ("Backends").
 *
 * @packageDocumentation
 */
import { MAX_OUTPUT_BYTES } from '../exec/command.js';

/** What espm asks of a worker. */
export type WorkerRequestKind = 'task' | 'refresh' | 'quit';
/** What a worker answers. */
export type WorkerAnswerKind = 'ready' | 'started' | 'done' | 'refreshed' | 'bye';

/** One decoded answer frame. */
export interface WorkerAnswer {
  kind: WorkerAnswerKind;
  /** The id of the request it answers (0 for `ready`). */
  id: number;
  /** Exit status (`ready`, `done`), or the `refreshed` outcome. */
  code: number;
  /** The task's stdout, bytes. */
  stdout: Buffer;
  /** The task's stderr, bytes. */
  stderr: Buffer;
}

/** Longest header line an answer may have, bytes. */
export const MAX_ANSWER_HEADER_BYTES = 128;
/** Largest stdout + stderr one answer may carry, bytes (as much as a process may print). */
export const MAX_ANSWER_PAYLOAD_BYTES = 2 * MAX_OUTPUT_BYTES;

const ANSWER_HEADER = /^@espm (ready|started|done|refreshed|bye) (\d{1,15}) (-?\d{1,5}) (\d{1,12}) (\d{1,12})$/;

/** The worker said something that is not the protocol, or not what was expected next. */
export class WorkerProtocolError extends Error {
  override readonly name = 'WorkerProtocolError';
}

/**
 * Encodes one request frame.
 *
 * @param kind - `task`, `refresh` or `quit`
 * @param id - the request's id (a positive integer, never reused by one worker client)
 * @param fields - for `task`: the task name, then `key=value` argv elements
 */
export function encodeRequest(kind: WorkerRequestKind, id: number, fields: readonly string[] = []): Buffer {
  const parts: Buffer[] = [Buffer.from(`@espm ${kind} ${id} ${fields.length}\n`, 'latin1')];
  for (const field of fields) {
    const data = Buffer.from(field, 'utf8');
    parts.push(Buffer.from(`${data.length}\n`, 'latin1'), data, Buffer.from('\n', 'latin1'));
  }
  return Buffer.concat(parts);
}

/** Splits a worker's stdout into answer frames, however the bytes arrive. */
export class AnswerDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: Omit<WorkerAnswer, 'stdout' | 'stderr'> & { outBytes: number; errBytes: number } | undefined;

  /**
   * Adds bytes; returns the frames they complete.
   *
   * @throws {@link WorkerProtocolError} on anything that is not a well-formed frame
   */
  push(chunk: Buffer): WorkerAnswer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: WorkerAnswer[] = [];
    for (;;) {
      if (this.header === undefined) {
        const head = this.peek(Math.min(this.buffered, MAX_ANSWER_HEADER_BYTES + 1));
        const newline = head.indexOf(0x0a);
        if (newline < 0) {
          if (head.length > MAX_ANSWER_HEADER_BYTES) throw new WorkerProtocolError(`not an answer header: ${JSON.stringify(head.toString('latin1').slice(0, 60))}`);
          break;
        }
        const line = head.subarray(0, newline).toString('latin1');
        const match = ANSWER_HEADER.exec(line);
        if (match === null) throw new WorkerProtocolError(`not an answer header: ${JSON.stringify(line.slice(0, 60))}`);
        const outBytes = Number(match[4]);
        const errBytes = Number(match[5]);
        if (outBytes + errBytes > MAX_ANSWER_PAYLOAD_BYTES) throw new WorkerProtocolError(`answer too large: ${outBytes + errBytes} bytes`);
        this.take(newline + 1);
        this.header = { kind: match[1] as WorkerAnswerKind, id: Number(match[2]), code: Number(match[3]), outBytes, errBytes };
      }
      const { outBytes, errBytes, ...rest } = this.header;
      const size = outBytes + errBytes + 1;
      if (this.buffered < size) break;
      const body = this.take(size);
      if (body[size - 1] !== 0x0a) throw new WorkerProtocolError(`answer ${rest.kind} ${rest.id} is not terminated where its lengths say`);
      frames.push({ ...rest, stdout: body.subarray(0, outBytes), stderr: body.subarray(outBytes, outBytes + errBytes) });
      this.header = undefined;
    }
    return frames;
  }

  /** The first `n` buffered bytes, left in the buffer. */
  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) return first.subarray(0, n);
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all.subarray(0, n);
  }

  /** Removes and returns the first `n` buffered bytes. */
  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return taken;
  }
}
