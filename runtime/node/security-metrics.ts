/**
 * The node's security on /metrics, beside what metrics.ts registers: whether
 * only known keys get in, and the client requests refused for their role.
 * (Links and messages refused count in mangrove_messages_rejected_total, by
 * reason: no_key, unknown_key, unauthenticated, forged_from…)
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { NodeStatus } from '../../actors/status.js';

export function registerSecurityMetrics(registry: Registry, status: () => NodeStatus): void {
  new Gauge({
    name: 'mangrove_secure',
    help: '1 when the node lets in only the keys its config knows (CURVE), 0 when it runs "insecure".',
    registers: [registry],
    collect() {
      this.set(status().security?.secure ? 1 : 0);
    },
  });
  new Counter({
    name: 'mangrove_requests_forbidden_total',
    help: 'Client requests refused E_FORBIDDEN because the role of the client\'s key does not allow them.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(status().security?.forbidden ?? 0);
    },
  });
}
