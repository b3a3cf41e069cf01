import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { Agent } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { ListBucketsCommand, S3Client } from "@aws-sdk/client-s3";
import { freePort } from "../../dev/redisServer.ts";

// A real S3 implementation for the integration tests: Ceph's RADOS Gateway (Debian's packages,
// scripts/install-rgw.sh) on a throw-away single-node cluster, one mon and one in-memory OSD,
// all under one temporary folder. A fresh cluster answers in about 1.5 s and stops in 0.5 s.

export interface RgwServer {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /**
   * With `tls`: the PEM file of the endpoint's self-signed certificate, which a client must
   * trust (`NODE_EXTRA_CA_CERTS` for a worker process).
   */
  certificate?: string;
  /** radosgw's own log. */
  log: string;
  /** The daemons' pids, in start order: mon, OSD, radosgw. */
  pids: number[];
  stop(): Promise<void>;
}

const USER = "s3csv-test";
const ACCESS_KEY_ID = "S3CSVTESTACCESSKEY01";
const SECRET_ACCESS_KEY = "s3csv-test-secret-key-for-the-local-rgw";
const REGION = "us-east-1";
const READY_TIMEOUT_MS = 120_000;
const COMMAND_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const LOG_TAIL_LINES = 30;

const run = promisify(execFile);

export class RgwMissingError extends Error {
  override name = "RgwMissingError";
  constructor() {
    super("radosgw was not found on PATH. Install it with scripts/install-rgw.sh (Debian/Ubuntu).");
  }
}

interface Daemon {
  name: string;
  child: ChildProcess;
  /** Ceph's own log, and the daemon's stdout/stderr. */
  log: string;
  out: string;
}

interface Cluster {
  dir: string;
  conf: string;
  logs: string;
  daemons: Daemon[];
  /** Aborted when the start failed: no command may run or daemon start after the clean-up. */
  signal: AbortSignal;
  /** Rejects when a daemon dies: the start then fails at once rather than at a timeout. */
  died: Promise<never>;
  fail(error: Error): void;
}

function cephConf(
  dir: string,
  fsid: string,
  monPort: number,
  rgwFrontend: string,
  rgwDebug = "",
): string {
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
# Without auth radosgw still asks the mon for a cephx ("secure") connection and gives up only
# after 300 s; crc is what auth none can offer.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
mon allow pool size one = true
mon warn on pool no redundancy = false
# A nearly full /tmp must not stop the mon of a test cluster.
mon data avail crit = 0
# The mon batches its map changes for 1 s by default; each pool radosgw creates costs a few.
paxos propose interval = 0.05
osd pool default size = 1
osd pool default min size = 1
# Few placement groups: each pool radosgw creates is ready sooner.
osd pool default pg num = 8
osd pool default pgp num = 8
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
crash dir = ${dir}/crash
log file = ${dir}/log/$name.log
mon cluster log file = ${dir}/log/cluster.log
keyring = ${dir}/keyring
mon data = ${dir}/mon/$name
osd data = ${dir}/osd/$name

[osd]
public addr = 127.0.0.1
osd objectstore = memstore
# Objects live in the OSD's memory: a test cluster must not grow without bound.
memstore device bytes = 2147483648

[client.rgw]
rgw frontends = ${rgwFrontend}
rgw data = ${dir}/rgw
${rgwDebug}
`;
}

async function tail(path: string): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text.trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n");
}

function commandError(step: string, error: unknown): Error {
  const e = error as { stderr?: string; message?: string };
  return new Error(`${step} failed: ${(e.stderr || e.message || String(error)).trim()}`);
}

async function command(
  cluster: Cluster,
  step: string,
  file: string,
  args: string[],
): Promise<string> {
  try {
    const { stdout } = await run(file, ["-c", cluster.conf, ...args], {
      timeout: COMMAND_TIMEOUT_MS,
      signal: cluster.signal,
    });
    return stdout;
  } catch (error) {
    throw commandError(step, error);
  }
}

function spawnDaemon(cluster: Cluster, name: string, file: string, args: string[]): Daemon {
  cluster.signal.throwIfAborted();
  // Output before a daemon's logging starts (bad config, bind errors) lands here.
  const out = join(cluster.logs, `${name}.out`);
  const fd = openSync(out, "a");
  try {
    const child = spawn(file, ["-c", cluster.conf, ...args], { stdio: ["ignore", fd, fd] });
    const daemon = { name, child, log: join(cluster.logs, `${name}.log`), out };
    const died = (how: string) => void failure(daemon, `${name} ${how}`).then(cluster.fail);
    child.once("error", (error) => died(`could not start: ${error.message}`));
    child.once("exit", (code, signal) => died(`exited (${code ?? signal})`));
    cluster.daemons.push(daemon);
    return daemon;
  } finally {
    closeSync(fd);
  }
}

/** False for a zombie too, where `kill -0` still succeeds. */
async function isAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return false;
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

async function waitDead(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

function kill(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Exited meanwhile.
  }
}

async function stopDaemon({ child }: Daemon): Promise<void> {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  kill(pid, "SIGTERM");
  if (await waitDead(pid, STOP_GRACE_MS)) return;
  kill(pid, "SIGKILL");
  await waitDead(pid, STOP_GRACE_MS);
}

/** radosgw first and the mon last: a radosgw that lost its mon hangs in shutdown. */
async function stopCluster(cluster: Cluster): Promise<void> {
  for (const daemon of [...cluster.daemons].reverse()) await stopDaemon(daemon);
  await rm(cluster.dir, { recursive: true, force: true });
}

async function failure(daemon: Daemon, reason: string): Promise<Error> {
  const sections = [];
  for (const file of [daemon.log, daemon.out]) {
    const text = await tail(file);
    if (text) sections.push(`--- ${file} ---\n${text}`);
  }
  return new Error([`RGW startup: ${reason}`, ...sections].join("\n"));
}

async function createMon(cluster: Cluster, fsid: string, monPort: number): Promise<void> {
  const monmap = join(cluster.dir, "monmap");
  const addr = `[v2:127.0.0.1:${monPort}]`;
  await command(cluster, "monmaptool", "monmaptool", [
    "--create",
    "--fsid",
    fsid,
    "--addv",
    "a",
    addr,
    monmap,
  ]);
  await command(cluster, "ceph-mon --mkfs", "ceph-mon", ["--mkfs", "-i", "a", "--monmap", monmap]);
  spawnDaemon(cluster, "mon.a", "ceph-mon", ["-i", "a", "-f"]);
}

async function createOsd(cluster: Cluster): Promise<void> {
  const uuid = randomUUID();
  // The CLI keeps trying the mon, which is still starting, until its connect timeout.
  const timeout = String(COMMAND_TIMEOUT_MS / 1000);
  const id = (
    await command(cluster, "ceph osd new", "ceph", [
      "--connect-timeout",
      timeout,
      "osd",
      "new",
      uuid,
    ])
  ).trim();
  await mkdir(join(cluster.dir, "osd", `osd.${id}`));
  await command(cluster, "ceph-osd --mkfs", "ceph-osd", ["-i", id, "--mkfs", "--osd-uuid", uuid]);
  spawnDaemon(cluster, `osd.${id}`, "ceph-osd", ["-i", id, "-f"]);
}

/** Before radosgw starts: this makes the default zone and its pools, which radosgw would race. */
async function createUser(cluster: Cluster): Promise<void> {
  const args = ["user", "create", "--uid", USER, "--display-name", "s3csv integration tests"];
  const keys = ["--access-key", ACCESS_KEY_ID, "--secret-key", SECRET_ACCESS_KEY];
  try {
    await command(cluster, "radosgw-admin user create", "radosgw-admin", [...args, ...keys]);
  } catch (error) {
    const log = join(cluster.logs, "client.admin.log");
    throw new Error(`${(error as Error).message}\n--- ${log} ---\n${await tail(log)}`);
  }
}

async function waitForS3(
  cluster: Cluster,
  endpoint: string,
  rgw: Daemon,
  ca: string | undefined,
): Promise<void> {
  const client = new S3Client({
    endpoint,
    ...(ca ? { requestHandler: { httpsAgent: new Agent({ ca }) } } : {}),
    region: REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
    maxAttempts: 1,
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  try {
    for (;;) {
      cluster.signal.throwIfAborted();
      try {
        await client.send(new ListBucketsCommand({}), { abortSignal: AbortSignal.timeout(5000) });
        return;
      } catch (error) {
        if (Date.now() > deadline) {
          throw await failure(rgw, `no signed answer from ${endpoint}: ${String(error)}`);
        }
        await sleep(200);
      }
    }
  } finally {
    client.destroy();
  }
}

/** A self-signed certificate for 127.0.0.1, made with openssl: the PEM paths. */
async function selfSigned(cluster: Cluster): Promise<{ certificate: string; key: string }> {
  const certificate = join(cluster.dir, "tls", "cert.pem");
  const key = join(cluster.dir, "tls", "key.pem");
  await mkdir(join(cluster.dir, "tls"));
  try {
    await run(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"],
        ...["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        ...["-keyout", key, "-out", certificate],
      ],
      { timeout: COMMAND_TIMEOUT_MS, signal: cluster.signal },
    );
  } catch (error) {
    throw commandError("openssl req (the test endpoint's certificate)", error);
  }
  return { certificate, key };
}

async function bootstrap(
  cluster: Cluster,
  monPort: number,
  rgwPort: number,
  tls: boolean,
): Promise<{ endpoint: string; certificate?: string }> {
  const fsid = randomUUID();
  const pem = tls ? await selfSigned(cluster) : undefined;
  const frontend = pem
    ? `beast ssl_endpoint=127.0.0.1:${rgwPort} ssl_certificate=${pem.certificate} ssl_private_key=${pem.key}`
    : `beast endpoint=127.0.0.1:${rgwPort}`;
  // Over TLS, each request's headers go to radosgw's log (HTTP_X_AMZ_CONTENT_SHA256=…), so a
  // test can tell an unsigned upload from a signed one on the server's side.
  const debug = pem ? "debug rgw = 20" : "";
  await writeFile(cluster.conf, cephConf(cluster.dir, fsid, monPort, frontend, debug));
  await createMon(cluster, fsid, monPort);
  await createOsd(cluster);
  await createUser(cluster);
  const rgw = spawnDaemon(cluster, "client.rgw", "radosgw", ["-n", "client.rgw", "-f"]);
  const endpoint = `${pem ? "https" : "http"}://127.0.0.1:${rgwPort}`;
  const ca = pem ? await readFile(pem.certificate, "utf8") : undefined;
  await waitForS3(cluster, endpoint, rgw, ca);
  return { endpoint, ...(pem ? { certificate: pem.certificate } : {}) };
}

async function twoFreePorts(): Promise<[number, number]> {
  const first = await freePort();
  for (;;) {
    const second = await freePort();
    if (second !== first) return [first, second];
  }
}

async function newCluster(parent: string, signal: AbortSignal): Promise<Cluster> {
  const dir = await mkdtemp(join(parent, "s3csv-rgw-"));
  await Promise.all(["log", "run", "crash", "mon", "osd", "rgw"].map((d) => mkdir(join(dir, d))));
  let fail: (error: Error) => void = () => {};
  const died = new Promise<never>((_, reject) => {
    fail = reject;
  });
  // Once the cluster is up, a daemon's exit (stop() causes them) concerns no one.
  died.catch(() => {});
  const logs = join(dir, "log");
  return { dir, conf: join(dir, "ceph.conf"), logs, daemons: [], signal, died, fail };
}

/**
 * Starts a single-node Ceph cluster with radosgw on a free loopback port, in a new folder under
 * `options.dir` (default: the OS's temporary folder) that stop() removes.
 */
export async function startRgw(options: { dir?: string; tls?: boolean } = {}): Promise<RgwServer> {
  if ((await run("radosgw", ["--version"]).catch(() => undefined)) === undefined) {
    throw new RgwMissingError();
  }
  const abort = new AbortController();
  const cluster = await newCluster(options.dir ?? tmpdir(), abort.signal);
  const [monPort, rgwPort] = await twoFreePorts();
  const started = bootstrap(cluster, monPort, rgwPort, options.tls ?? false);
  let up: { endpoint: string; certificate?: string };
  try {
    up = await Promise.race([started, cluster.died]);
  } catch (error) {
    abort.abort();
    await started.catch(() => {});
    await stopCluster(cluster);
    throw error;
  }
  return {
    ...up,
    log: join(cluster.logs, "client.rgw.log"),
    accessKeyId: ACCESS_KEY_ID,
    secretAccessKey: SECRET_ACCESS_KEY,
    region: REGION,
    pids: cluster.daemons.map((d) => d.child.pid as number),
    stop: () => stopCluster(cluster),
  };
}

async function main(): Promise<void> {
  const rgw = await startRgw();
  console.log(`endpoint ${rgw.endpoint}`);
  console.log(`AWS_ACCESS_KEY_ID=${rgw.accessKeyId} AWS_SECRET_ACCESS_KEY=${rgw.secretAccessKey}`);
  console.log(`region ${rgw.region}, pids ${rgw.pids.join(" ")}; Ctrl-C stops it`);
  // Ctrl-C reaches the daemons as well (they share our process group, so that an interrupted
  // test run takes them down too); a radosgw that lost its mon first can take 10 s to go.
  await new Promise((resolve) => process.once("SIGINT", resolve));
  await rgw.stop();
}

if (import.meta.main) await main();
