#!/usr/bin/env node
// stdio wire tap (see wiretap.mjs): node stdio-tap.mjs <logfile> <pidfile> -- <cmd> [args...]
// Runs <cmd> with piped stdin/stdout, relays both directions line by line unchanged, and appends
// one JSON line per message to <logfile>: {"dir":"out","msg":...} for client -> server,
// {"dir":"in","msg":...} for server -> client. Writes "<own pid> <server pid>" to <pidfile>.
// Exits (killing the server) when stdin closes or on SIGTERM/SIGINT; exits when the server exits.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';

const [logFile, pidFile, sep, cmd, ...args] = process.argv.slice(2);
if (!logFile || !pidFile || sep !== '--' || !cmd) {
  process.stderr.write('usage: stdio-tap.mjs <logfile> <pidfile> -- <cmd> [args...]\n');
  process.exit(2);
}

const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
fs.writeFileSync(pidFile, `${process.pid} ${child.pid}\n`);

const record = (dir, line) => {
  let msg;
  try { msg = JSON.parse(line); } catch { msg = { unparsed: line }; }
  try { fs.appendFileSync(logFile, JSON.stringify({ dir, msg }) + '\n'); } catch { /* best effort */ }
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim()) record('out', line);
  child.stdin.write(line + '\n');
});
readline.createInterface({ input: child.stdout }).on('line', (line) => {
  if (line.trim()) record('in', line);
  process.stdout.write(line + '\n');
});

const stop = () => { try { child.kill('SIGTERM'); } catch { /* gone */ } setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } process.exit(0); }, 1000).unref(); };
process.stdin.on('end', () => { try { child.stdin.end(); } catch { /* gone */ } stop(); });
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
child.on('exit', (code, sig) => process.exit(code ?? (sig ? 1 : 0)));
child.stdin.on('error', () => { /* server gone */ });
process.stdout.on('error', () => stop());
