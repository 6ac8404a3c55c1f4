/**
 * The commands of the `tls-tunnel` executable (`server`, `client`, `demo`, `check`, `template`, `top`,
 * `version`; `cert` is imported by main.ts only when it runs, since its certificate library is large) and
 * the logging set-up they share. Only main.ts exits the process; every command here returns.
 *
 * @module
 */

export { checkCommand } from "./check.ts";
export type { CertOptions } from "./cert.ts";
export { templateCommand } from "./template.ts";
export { clientCommand, demoCommand, serverCommand } from "./run.ts";
export { versionCommand } from "./version.ts";
export { type RegisterCliOptions, registerCommand, unregisterCommand } from "./register.ts";
export { DEFAULT_TOP_URL, topCommand } from "./top.ts";
export { type LogFormat, setupLogging, writeOutput } from "./logging.ts";
