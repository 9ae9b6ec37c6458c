#!/usr/bin/env node
// Produce the MDNs (RFC 8098, in the AS2 form of RFC 4130 §7) that libas2 writes in answer to
// an AS2 message. Not run by CI: it regenerates mssante/testdata/mdn-libas2-*.eml by hand.
//
//   mkdir /tmp/as2 && cd /tmp/as2 && npm init -y && npm install libas2@0.8.2 pkijs@2.1.90
//   NODE_PATH=/tmp/as2/node_modules node mssante/testdata/mdn-gen/libas2_mdn.js mssante/testdata
//
// pkijs is pinned to 2.1.90, the lowest version libas2 0.8.2 accepts (^2.1.90): from pkijs 2.2
// on, an rsaEncryption key maps to RSAES-PKCS1-v1_5 and libas2's signing fails with
// "Unsupported signature algorithm".
//
// Two throw-away trading partners get a self-signed RSA certificate each (openssl, in a
// temporary folder deleted at the end; no key is kept). The "hopital" partner composes a
// signed AS2 message asking for an MDN; the "clinique" host parses those bytes, verifies
// them and lets libas2 build its outgoing MDN (AS2Disposition.outgoing):
//   - mdn-libas2-processed.eml: the MDN as libas2 builds it when the partner asks for an
//     unsigned MDN;
//   - mdn-libas2-signed.eml: the same MDN signed (multipart/signed, sha-256), as asked
//     with partner.mdn.signing;
//   - mdn-libas2-failed.eml: the answer to a message whose signature does not verify
//     (the host holds another certificate for the partner): failed/failure.
// AS2 MDNs travel over HTTP: they have AS2-From/AS2-To headers but no From, Date or Subject.
'use strict'

const { execFileSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const { AS2Composer, AS2Parser, AS2Disposition } = require('libas2')

function selfSigned (dir, name) {
  const key = path.join(dir, name + '.key')
  const crt = path.join(dir, name + '.crt')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-sha256', '-nodes', '-days', '2',
    '-subj', '/CN=' + name + ' (test)', '-keyout', key, '-out', crt], { stdio: 'ignore' })
  return { key: fs.readFileSync(key, 'utf8'), crt: fs.readFileSync(crt, 'utf8') }
}

async function main () {
  const outdir = process.argv[2]
  if (!outdir) throw new Error('usage: libas2_mdn.js OUTDIR')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'as2-mdn-'))
  try {
    const hopital = selfSigned(dir, 'hopital-as2')
    const clinique = selfSigned(dir, 'clinique-as2')
    const stranger = selfSigned(dir, 'stranger-as2')
    const hopitalSide = {
      name: 'Hopital (test)', id: 'HOPITAL-TEST', url: 'http://127.0.0.1:1/as2',
      certificate: hopital.crt, privateKey: hopital.key,
      sign: 'sha-256', mdn: { signing: 'sha-256' }
    }
    // The message the hopital sends: a small fake document, signed, asking for an MDN.
    const composer = new AS2Composer({
      message: { filename: 'cr.xml', contentType: 'application/xml', content: '<cr>exemple fictif</cr>' },
      agreement: {
        host: hopitalSide,
        partner: { name: 'Clinique (test)', id: 'CLINIQUE-TEST', url: 'http://127.0.0.1:1/as2', certificate: clinique.crt, verify: true, mdn: { signing: 'sha-256' } }
      }
    })
    const req = await composer.toRequestOptions()
    // What the clinique receives over HTTP: the headers and the body, parsed by libas2.
    const received = await AS2Parser.parse({ headers: req.headers, content: req.body })
    const answer = async (partnerCert, signing) => {
      const { dispositionNode } = await AS2Disposition.outgoing({
        node: received,
        agreement: {
          host: { name: 'Clinique (test)', id: 'CLINIQUE-TEST', url: 'http://127.0.0.1:1/as2', certificate: clinique.crt, privateKey: clinique.key },
          partner: { name: 'Hopital (test)', id: 'HOPITAL-TEST', url: 'http://127.0.0.1:1/as2', certificate: partnerCert, verify: true, mdn: { signing } }
        }
      })
      return dispositionNode.build()
    }
    const out = {
      'mdn-libas2-processed.eml': await answer(hopital.crt, false),
      'mdn-libas2-signed.eml': await answer(hopital.crt, 'sha-256'),
      'mdn-libas2-failed.eml': await answer(stranger.crt, false)
    }
    const version = require('libas2/package.json').version
    for (const [name, bytes] of Object.entries(out)) {
      fs.writeFileSync(path.join(outdir, name), bytes)
      console.log(`${name}: ${bytes.length} bytes from libas2 ${version}`)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch(e => { console.error(e); process.exit(1) })
