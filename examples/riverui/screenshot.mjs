// Drives headless Chromium over the DevTools protocol for screenshot.sh:
// opens each URL, answers the UI's basic-auth challenge the way a user
// answers the browser's login dialog, waits until the page shows the
// expected text, prints the page's text and saves a PNG.
//
//   node --experimental-websocket screenshot.mjs USER PASSWORD URL EXPECT OUT.png [URL EXPECT OUT.png ...]
//
// Needs Node 20+ (its WebSocket) and chromium on PATH. Not run by CI.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [user, password, ...rest] = process.argv.slice(2);
if (!user || !password || rest.length === 0 || rest.length % 3 !== 0) {
  console.error("usage: screenshot.mjs USER PASSWORD URL EXPECT OUT.png [...]");
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), "riverui-chromium-"));
// Never leave a browser behind, whatever fails below.
process.on("exit", () => { if (chromium.exitCode === null) chromium.kill("SIGKILL"); });
process.on("uncaughtException", (err) => { console.error(err); process.exit(1); });
process.on("unhandledRejection", (err) => { console.error(err); process.exit(1); });
const chromium = spawn("chromium", [
  "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
  `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });

const wsURL = await new Promise((resolve, reject) => {
  let log = "";
  chromium.stderr.on("data", (chunk) => {
    log += chunk;
    const m = log.match(/DevTools listening on (ws:\/\/\S+)/);
    if (m) resolve(m[1]);
  });
  chromium.on("exit", (code) => reject(new Error(`chromium exited ${code}: ${log}`)));
  setTimeout(() => reject(new Error("chromium did not start: " + log)), 30000);
});

const ws = new WebSocket(wsURL);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
let nextID = 0;
const pending = new Map();
const listeners = [];
ws.onmessage = (ev) => {
  const msg = JSON.parse(ev.data);
  if (msg.id !== undefined) {
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(JSON.stringify(msg.error)));
    else p.resolve(msg.result);
  } else {
    for (const l of listeners) l(msg);
  }
};
const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
  const id = ++nextID;
  pending.set(id, { resolve, reject });
  ws.send(JSON.stringify({ id, method, params, sessionId }));
});

const { targetId } = await send("Target.createTarget", { url: "about:blank" });
const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
const page = (method, params) => send(method, params, sessionId);

let challenges = 0;
listeners.push((msg) => {
  if (msg.sessionId !== sessionId) return;
  if (msg.method === "Fetch.requestPaused") {
    page("Fetch.continueRequest", { requestId: msg.params.requestId }).catch(() => {});
  } else if (msg.method === "Fetch.authRequired") {
    challenges++;
    page("Fetch.continueWithAuth", {
      requestId: msg.params.requestId,
      authChallengeResponse: { response: "ProvideCredentials", username: user, password },
    }).catch(() => {});
  }
});
await page("Fetch.enable", { handleAuthRequests: true, patterns: [{ urlPattern: "*" }] });
await page("Emulation.setDeviceMetricsOverride", { width: 1440, height: 900, deviceScaleFactor: 1, mobile: false });
await page("Page.enable");

const text = async () => (await page("Runtime.evaluate", {
  expression: "document.body ? document.body.innerText : ''", returnByValue: true,
})).result.value;

let failed = false;
for (let i = 0; i < rest.length; i += 3) {
  const [url, expect, out] = rest.slice(i, i + 3);
  await page("Page.navigate", { url });
  const deadline = Date.now() + 30000;
  let shown = "";
  while (Date.now() < deadline) {
    shown = await text();
    if (shown.includes(expect)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  // Let the UI finish rendering what it fetched.
  await new Promise((r) => setTimeout(r, 1000));
  shown = await text();
  const { data } = await page("Page.captureScreenshot", { format: "png" });
  writeFileSync(out, Buffer.from(data, "base64"));
  console.log(`== ${url} -> ${out} (basic-auth challenges answered so far: ${challenges})`);
  console.log(shown.replace(/\n{2,}/g, "\n"));
  if (!shown.includes(expect)) {
    console.error(`page never showed ${JSON.stringify(expect)}`);
    failed = true;
  }
}

const exited = new Promise((r) => chromium.on("exit", r));
await send("Browser.close").catch(() => chromium.kill());
await exited;
ws.close();
rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
process.exit(failed ? 1 : 0);
