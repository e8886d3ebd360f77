import Foundation
import Hummingbird
import Logging

// hello-world PORT: answers GET /hello with "ok" on 127.0.0.1:PORT until SIGTERM or SIGINT.
let arguments = CommandLine.arguments.dropFirst()
guard let text = arguments.first, let port = Int(text), arguments.count == 1 else {
    print("usage: hello-world PORT")
    exit(64)
}
var logger = Logger(label: "hello-world")
logger.logLevel = .warning
let router = Router()
router.get("hello") { _, _ in "ok" }
let app = Application(
    router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
try await app.runService()
