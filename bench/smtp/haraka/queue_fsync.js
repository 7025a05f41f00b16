// queue_fsync: Haraka's queue hook for bench/smtp. Each message is written
// to its own file in the directory queue_fsync.ini names ([main] dir),
// fsynced, and only then answered 250 (OK); a failure answers 451
// (DENYSOFT). That makes Haraka a durable peer, like Postfix's queue and
// the gateway's store: no message is acknowledged before it is on disk.
// (Like Postfix, it fsyncs the file, not the directory that names it.)
'use strict'

const fs = require('node:fs')
const path = require('node:path')

exports.register = function () {
    this.dir = this.config.get('queue_fsync.ini').main.dir
    if (!this.dir) throw new Error('queue_fsync.ini: [main] dir is not set')
}

// No reverse DNS lookup per connection, as the Postfix peer
// (smtpd_peername_lookup = no) and the gateway: the remote's name is its
// address.
exports.hook_lookup_rdns = function (next, connection) {
    next(OK, connection.remote.ip)
}

exports.hook_queue = function (next, connection) {
    const txn = connection?.transaction
    if (!txn) return next()
    const file = path.join(this.dir, `${txn.uuid}.eml`)
    let done = false
    const finish = (err) => {
        if (done) return
        done = true
        if (err) {
            connection.logerror(this, `${file}: ${err.message}`)
            return next(DENYSOFT, 'cannot store the message')
        }
        next(OK, 'stored')
    }
    fs.open(file, 'wx', (err, fd) => {
        if (err) return finish(err)
        const ws = fs.createWriteStream(null, { fd, autoClose: false })
        ws.once('error', (err) => fs.close(fd, () => finish(err)))
        ws.once('finish', () => {
            fs.fsync(fd, (err) => {
                fs.close(fd, (cerr) => finish(err || cerr))
            })
        })
        txn.message_stream.pipe(ws, { line_endings: '\r\n' })
    })
}
