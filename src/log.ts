// Leveled logging to stderr, one line per message: procd hands stderr to logd, systemd to the
// journal, and both add their own timestamps.

export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export class Logger {
  private readonly rank: number;
  /** The last warnings and errors, newest last (for `status`). */
  readonly recent: string[] = [];

  constructor(level: LogLevel) {
    this.rank = LOG_LEVELS.indexOf(level);
  }

  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) <= this.rank;
  }

  private write(level: LogLevel, msg: string): void {
    if (this.enabled(level)) process.stderr.write(`${level}: ${msg}\n`);
    if (level === "error" || level === "warn") {
      this.recent.push(`${new Date().toISOString()} ${level}: ${msg}`);
      if (this.recent.length > 10) this.recent.shift();
    }
  }

  error(msg: string): void {
    this.write("error", msg);
  }
  warn(msg: string): void {
    this.write("warn", msg);
  }
  info(msg: string): void {
    this.write("info", msg);
  }
  /** A function is called only at debug level: per-flow messages cost nothing otherwise. */
  debug(msg: string | (() => string)): void {
    if (this.enabled("debug")) this.write("debug", typeof msg === "string" ? msg : msg());
  }
}
