/**
 * Who may use a node's HTTP port (runtime/http/access.ts): 127.0.0.1 by
 * default, anywhere else only with a token, which every request then
 * carries (a bearer header, or the cookie `?token=` trades for); refusals
 * are counted by reason. The server listens on loopback here: a token is
 * given so the rule applies anyway.
 */
import { expect } from 'chai';
import { request } from 'node:http';
import { Registry } from 'prom-client';
import { HttpAccess, isLoopback } from '../../../../runtime/http/access.js';
import { startHttp, type HttpServer } from '../../../../runtime/http/server.js';
import { sampleStatus } from '../../../fixtures/status.js';
import { errorOf } from '../../../helpers/error-of.js';

const TOKEN = 'a-token-of-some-length';

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('runtime/http/access', () => {
  it('tells loopback addresses from the others', () => {
    for (const h of ['127.0.0.1', '127.3.2.1', '::1', 'localhost']) expect(isLoopback(h), h).to.equal(true);
    for (const h of ['0.0.0.0', '10.0.0.7', '::', '192.168.1.2', 'example.org']) expect(isLoopback(h), h).to.equal(false);
  });

  it('listens on 127.0.0.1 by default, and refuses another address without a token, or a short token, naming the field', () => {
    expect(new HttpAccess().host).to.equal('127.0.0.1');
    expect(errorOf(() => new HttpAccess({ host: '0.0.0.0' }))).to.match(/^E_BAD_CONFIG: "httpHost" 0\.0\.0\.0 lets other machines in: give "httpToken"/);
    expect(errorOf(() => new HttpAccess({ host: '0.0.0.0', token: 'short' }))).to.match(/^E_BAD_CONFIG: "httpToken" must have at least 16 characters/);
    expect(new HttpAccess({ host: '0.0.0.0', token: TOKEN }).host).to.equal('0.0.0.0');
  });

  describe('with a token', () => {
    let http: HttpServer;
    const access = new HttpAccess({ host: '127.0.0.1', token: TOKEN });
    before(async () => {
      http = await startHttp(0, { status: () => sampleStatus(), registry: new Registry() }, access);
    });
    after(() => http.close());

    it('refuses a request without it or with another (401, counted by reason), on every route', async () => {
      for (const path of ['/status', '/metrics', '/nowhere']) {
        const r = await get(http.port, path);
        expect(r.status, path).to.equal(401);
        expect(JSON.parse(r.body).code).to.equal('E_FORBIDDEN');
      }
      expect((await get(http.port, '/status', { authorization: 'Bearer not-the-token-at-all' })).status).to.equal(401);
      expect((await get(http.port, '/status', { cookie: 'mangrove_token=wrong' })).status).to.equal(401);
      expect(access.refused).to.deep.equal({ no_token: 3, bad_token: 2 });
    });

    it('serves a request with the bearer header', async () => {
      const r = await get(http.port, '/status', { authorization: `Bearer ${TOKEN}` });
      expect(r.status).to.equal(200);
      expect(JSON.parse(r.body).self).to.equal(sampleStatus().self);
    });

    it('trades ?token= for a cookie (and a URL without it), which is then enough', async () => {
      const r = await get(http.port, `/status?x=1&token=${TOKEN}`);
      expect(r.status).to.equal(303);
      expect(r.headers.location).to.equal('/status?x=1');
      const set = String(r.headers['set-cookie']);
      expect(set).to.match(/^mangrove_token=a-token-of-some-length; HttpOnly; SameSite=Strict; Path=\//);
      const again = await get(http.port, '/status?x=1', { cookie: set.split(';')[0]! });
      expect(again.status).to.equal(200);
    });
  });
});
