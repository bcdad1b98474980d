// Run the REAL, unmodified AWS SDK for JavaScript's instance metadata client against a base URL
// (called by probe.py: `probe.py aws-sdk-js|aws-sdk-js-v2 BASE_URL`).
//
//   node probe_aws_sdk.js v3|v2 BASE_URL TIMEOUT_MS
//
// v3: @aws-sdk/ec2-metadata-service's MetadataService, with IMDSv1 disabled (ec2MetadataV1Disabled:
//     a request without a session token is never made): fetchMetadataToken(), then request(),
//     which fetches a token again and sends it, as the SDK does.
// v2: aws-sdk's AWS.MetadataService, also with IMDSv1 disabled: fetchMetadataToken(), then
//     request() with the token header, as its loadCredentials() does.
// Prints one JSON object on stdout and exits 0; one line on stderr and exit 1 when the SDK fails.
"use strict";

const [, , flavour, base, timeoutText] = process.argv;
const timeout = Number(timeoutText || "2000");
const paths = { instance_id: "/latest/meta-data/instance-id", hostname: "/latest/meta-data/hostname" };

async function v3() {
  const { MetadataService } = require("@aws-sdk/ec2-metadata-service");
  const service = new MetadataService({
    endpoint: base.replace(/\/+$/, ""), httpOptions: { timeout }, retries: 0, ec2MetadataV1Disabled: true,
  });
  const out = { client: "aws-sdk-js", client_version: require("@aws-sdk/ec2-metadata-service/package.json").version };
  out.token_length = (await service.fetchMetadataToken()).length;
  for (const [key, path] of Object.entries(paths)) {
    out[key] = await service.request(path, {});
  }
  return out;
}

function v2() {
  process.env.AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE = "1";
  const AWS = require("aws-sdk");
  const url = new URL(base);
  const service = new AWS.MetadataService({
    host: url.host, httpOptions: { timeout }, maxRetries: 0, ec2MetadataV1Disabled: true,
  });
  const call = (fn, ...args) => new Promise((resolve, reject) => fn.call(service, ...args, (err, data) => (err ? reject(err) : resolve(data))));
  return (async () => {
    const out = { client: "aws-sdk-js-v2", client_version: AWS.VERSION };
    const token = await call(service.fetchMetadataToken);
    out.token_length = token.length;
    for (const [key, path] of Object.entries(paths)) {
      out[key] = await call(service.request, path, { headers: { "x-aws-ec2-metadata-token": token } });
    }
    return out;
  })();
}

const run = { v3, v2 }[flavour];
if (!run) {
  process.stderr.write(`probe_aws_sdk.js: unknown SDK ${flavour} (v3 or v2)\n`);
  process.exit(2);
}
run().then(
  (out) => { process.stdout.write(JSON.stringify(out) + "\n"); },
  (err) => {
    const status = err.statusCode || (err.$metadata && err.$metadata.httpStatusCode) || "";
    process.stderr.write(`${err.name || "Error"}: ${String(err.message || err).split("\n")[0]} ${status}\n`);
    process.exit(1);
  },
);
