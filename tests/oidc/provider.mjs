// A real OpenID Provider for the sign-in tests (the npm `oidc-provider`, a
// certified implementation), on a free loopback port.
//
// It prints {"issuer": "http://127.0.0.1:PORT"} as its first line, then reads
// one line of JSON from standard input — {"clients": [...], "accounts": {...}}
// — because the clients' redirect URIs name the app, which is started with the
// issuer. Accounts map a login name to its claims; any other login signs in
// with no claims but `sub`. The development interactions (a login form that
// takes any password, a consent form, an abort link) stand in for a real
// provider's pages.
import http from 'node:http';
import readline from 'node:readline';
import Provider from 'oidc-provider';

// Standard output carries only the two lines the tests read; the provider's
// own notices go to standard error.
console.log = console.error;
console.info = console.error;

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  process.stdout.write(JSON.stringify({ issuer }) + '\n');
  const lines = readline.createInterface({ input: process.stdin });
  lines.once('line', (line) => {
    const { clients, accounts = {} } = JSON.parse(line);
    const provider = new Provider(issuer, {
      clients,
      // Claims in the ID token itself (the relying party reads no userinfo).
      conformIdTokenClaims: false,
      claims: {
        openid: ['sub', 'workspaces', 'platform_admin', 'custom:workspaces'],
        email: ['email', 'email_verified'],
        profile: ['name'],
      },
      async findAccount(ctx, id) {
        return {
          accountId: id,
          async claims() {
            return { sub: id, ...(accounts[id] || {}) };
          },
        };
      },
      features: {
        devInteractions: { enabled: true },
        rpInitiatedLogout: { enabled: true },
      },
      pkce: { required: () => true },
      cookies: { keys: ['kpi-integrations-test-cookie-key'] },
      // Keep every grant: a second sign-in in the same browser needs no form.
      loadExistingGrant: async (ctx) => {
        const grantId = ctx.oidc.result?.consent?.grantId
          || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
        return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
      },
    });
    provider.proxy = false;
    server.on('request', provider.callback());
    process.stdout.write('ready\n');
  });
});
