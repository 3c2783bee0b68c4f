// The version shown by --version, `status` and the status file.
import pkg from "../package.json" with { type: "json" };

export const VERSION: string = pkg.version;
