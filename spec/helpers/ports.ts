/**
 * A TCP port nothing listens on right now, for specs that bind real sockets
 * on 127.0.0.1. The OS picks it, so parallel runs do not collide (a port can
 * still be taken between here and the bind; that race is the OS's to lose).
 */
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('the OS gave no TCP port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
