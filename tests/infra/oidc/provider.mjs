// A real OpenID provider for the tests (oidc-provider, the certified Node implementation), shaped like
// Pro Santé Connect: scope "scope_all", acr "eidas1", userinfo naming the person by SubjectNameID (IDNPS)
// and their practice structures under SubjectRefPro.exercices[].activities[].
// Usage: node provider.mjs CONFIG.json   (port, issuer, clients, users: {login: claims}); prints "ready".
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = config.users;

const provider = new Provider(config.issuer, {
  clients: config.clients,
  pkce: { required: () => true },
  scopes: ['openid', 'scope_all'],
  claims: {
    openid: ['sub'],
    scope_all: ['SubjectNameID', 'SubjectRefPro', 'given_name', 'family_name', 'preferred_username'],
  },
  acrValues: ['eidas1'],
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['relais-test-provider-only'] },
  async findAccount(ctx, id) {
    const claims = users[id];
    if (!claims) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
});

// Pro Santé Connect authenticates with a CPS or e-CPS card (acr "eidas1"); the development login page has no
// card, so its login step is finished here with that acr (the consent step stays the library's own).
provider.use(async (ctx, next) => {
  const match = ctx.method === 'POST' && ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!match) return next();
  const body = new URLSearchParams(await new Promise((resolve) => {
    let data = '';
    ctx.req.on('data', (chunk) => { data += chunk; });
    ctx.req.on('end', () => resolve(data));
  }));
  if (body.get('prompt') !== 'login') {
    // The stream is read: hand the library the parsed form (its body reader accepts a pre-parsed one).
    ctx.req.body = Object.fromEntries(body);
    return next();
  }
  const result = { login: { accountId: body.get('login'), acr: 'eidas1', amr: ['mfa'] } };
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.respond = false;
});

provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
