/**
 * `mangrove dashboard` against a real node process (M25): it finds the
 * node's HTTP port in its status and prints the dashboard's URL, which
 * serves the page; a node without an HTTP port is a clear error. The
 * browser side is spec/e2e's. Every process is stopped by pid.
 */
import { expect } from 'chai';
import { get } from 'node:http';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { mangrove } from '../helpers/run-cli.js';
import { until } from '../helpers/until.js';

function fetchText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    }).on('error', reject);
  });
}

describe('mangrove dashboard, with a real node', function () {
  this.timeout(60_000);
  let withHttp: ProcessCluster;
  let withoutHttp: ProcessCluster;

  before(async () => {
    withHttp = await ProcessCluster.start({ nodes: 1, anchors: 1, http: true });
    withoutHttp = await ProcessCluster.start({ nodes: 1, anchors: 1 });
    for (const c of [withHttp, withoutHttp]) await until('the node to answer', async () => (await c.statuses())[0] !== undefined, { timeoutMs: 20_000, pollMs: 100 });
  });
  after(async () => {
    await withHttp?.stop();
    await withoutHttp?.stop();
  });

  it("prints the URL of the node's dashboard, which serves the page", async () => {
    const run = await mangrove(['dashboard', '--connect', withHttp.endpoints[0]!, '--json']);
    expect(run.code, run.stderr).to.equal(0);
    const { url, node } = JSON.parse(run.stdout) as { url: string; node: string };
    const status = (await withHttp.statuses())[0]!;
    expect(url).to.equal(`http://127.0.0.1:${status.http}/`);
    expect(node).to.equal(status.self);
    const page = await fetchText(url);
    expect(page.status).to.equal(200);
    expect(page.body).to.match(/<!doctype html>/i);
    // Without --json and without a display: the URL on stdout, and why nothing opened on stderr.
    const plain = await mangrove(['dashboard', '--connect', withHttp.endpoints[0]!]);
    expect(plain.code).to.equal(0);
    expect(plain.stdout.trim()).to.equal(url);
  });

  it('says so when the node serves no HTTP port, and when no node answers', async () => {
    const none = await mangrove(['dashboard', '--connect', withoutHttp.endpoints[0]!]);
    expect(none.code).to.equal(1);
    expect(none.stderr).to.match(/^error E_NOT_FOUND: the node at .* serves no HTTP port: give it "httpPort"/);
    const gone = await mangrove(['dashboard', '--connect', 'tcp://127.0.0.1:1', '--timeout', '300']);
    expect(gone.code).to.equal(1);
    expect(gone.stderr).to.match(/^error E_(UNREACHABLE|TIMEOUT): /);
  });
});
