/**
 * Where the `p2pd` command writes (see `main.ts`): its output streams, its exit codes, and the
 * progress display on stderr.
 * @module
 */

/** Where the CLI writes. */
export interface CliIo {
  /** Results. */
  stdout: { write(s: string): unknown; isTTY?: boolean };
  /** Progress, warnings and errors. */
  stderr: { write(s: string): unknown; isTTY?: boolean };
  /** Aborts a running command (Ctrl-C). */
  signal?: AbortSignal;
}

/** Exit codes. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

/** A spinner (terminal) or one line per step (anything else) on stderr. */
export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private text = '';
  private frame = 0;
  private last = '';
  /**
   * @param out Where to draw (stderr).
   * @param enabled `false` draws nothing (`--quiet`).
   */
  constructor(private readonly out: CliIo['stderr'], private readonly enabled: boolean) {}

  /** Shows `text` as the current step. */
  update(text: string): void {
    if (!this.enabled) return;
    this.text = text;
    if (!this.out.isTTY) {
      if (text !== this.last) this.out.write(`… ${text}\n`);
      this.last = text;
      return;
    }
    if (!this.timer) {
      this.timer = setInterval(() => this.draw(), 80);
      this.timer.unref();
    }
    this.draw();
  }

  private draw(): void {
    const frames = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
    this.out.write(`\r\x1b[2K${frames[this.frame++ % frames.length]} ${this.text}`);
  }

  /** Clears the spinner line. */
  stop(): void {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.out.write('\r\x1b[2K');
    }
  }
}
