import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import IDPServer

/// No value can break a log line in two: control and other non-printing characters are escaped.
@Suite("Log escaping")
struct LogEscapeTests {
    @Test(
        "control and non-printing characters are escaped; printable text is kept",
        arguments: [
            ("plain text: a=b, [x] {y}", "plain text: a=b, [x] {y}"),
            ("line\nbreak", "line\\nbreak"), ("carriage\rreturn", "carriage\\rreturn"), ("tab\there", "tab\\there"),
            ("back\\slash", "back\\\\slash"), ("bell\u{07}", "bell\\u{7}"), ("\u{1B}[31mred", "\\u{1B}[31mred"),
            ("nul\u{0}", "nul\\u{0}"), ("del\u{7F}", "del\\u{7F}"), ("next\u{85}line", "next\\u{85}line"),
            ("line\u{2028}separator", "line\\u{2028}separator"), ("para\u{2029}graph", "para\\u{2029}graph"),
            ("rtl\u{202E}override", "rtl\\u{202E}override"), ("zero\u{200B}width", "zero\\u{200B}width"),
            ("no\u{A0}break", "no\\u{A0}break"), ("Ünïcødé 名前 émoji 🙂", "Ünïcødé 名前 émoji 🙂"), ("", ""),
        ])
    func escapes(_ text: String, _ expected: String) {
        #expect(LogEscape.escape(text) == expected)
        #expect(!LogEscape.escape(text).contains { $0.isNewline })
    }

    @Test("nested metadata values are escaped too")
    func metadata() {
        let value: Logger.MetadataValue = .dictionary([
            "a\nb": .array([.string("x\ny"), .stringConvertible(42)]), "c": .string("ok"),
        ])
        #expect(
            LogEscape.escape(value)
                == .dictionary(["a\\nb": .array([.string("x\\ny"), .string("42")]), "c": .string("ok")]))
    }

    @Test("the escaping handler escapes the message, every metadata value, handler metadata and errors")
    func handler() {
        let capture = LogCapture()
        var logger = capture.logger(escaping: true)
        logger[metadataKey: "request"] = "GET /x\nforged"
        struct Failure: Error, CustomStringConvertible { var description: String { "bad\nthing" } }
        logger.info("created\nwarning forged", metadata: ["name": "demo\r\nERROR admin"])
        logger.error("failed", error: Failure())
        let lines = capture.lines.withLockedValue { $0 }
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { !$0.contains { $0.isNewline } })
        #expect(lines[0].contains("created\\nwarning forged"))
        #expect(lines[0].contains("demo\\r\\nERROR admin"))
        #expect(lines[0].contains("GET /x\\nforged"))
        #expect(lines[1].contains("bad\\nthing"))
    }

    @Test("a newline in a client name or a form body cannot forge a log line")
    func forgedLines() async throws {
        try await Harness.run(debugAllRequests: true, escapeLogs: true) {
            (harness: Harness, client: any TestClientProtocol) async throws in
            let (headers, body) = form(
                "name=demo%0Aerror%20forged%3A%20admin%20granted&redirect_uri=https%3A%2F%2Fa.example.com")
            // A control character in a client name is refused outright (registration limits); the
            // debug dump of that request still shows the body on one line.
            let refused = try await client.execute(uri: "/clients/new", method: .post, headers: headers, body: body)
            #expect(refused.status == .badRequest)
            #expect(refused.json["error"] as? String == "invalid_client_metadata")
            let (formHeaders, _) = form("")
            _ = try await client.execute(
                uri: "/token", method: .post, headers: formHeaders,
                body: ByteBuffer(string: "grant_type=x\nwarning forged=line\r\n\u{1B}[2J"))
            var odd = HTTPFields()
            odd[HTTPField.Name("User-Agent")!] = "agent\u{0B}with\u{0C}controls"
            _ = try await client.execute(uri: "/healthz/live", method: .get, headers: odd)
            let lines = harness.capture.lines.withLockedValue { $0 }
            #expect(!lines.contains { $0.contains("client created") })
            #expect(lines.contains { $0.contains("grant_type=x\\nwarning forged=line\\r\\n\\u{1B}[2J") })
            for line in lines {
                #expect(!line.contains(where: { $0.isNewline || $0 == "\u{1B}" }), "\(line)")
            }
        }
    }
}
