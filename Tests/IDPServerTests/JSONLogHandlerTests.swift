import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

@testable import IDPServer

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    /// A logger writing JSON lines into the returned box.
    static func logger() -> (Logger, NIOLockedValueBox<[String]>) {
        let lines = NIOLockedValueBox<[String]>([])
        let output = JSONLogOutput { line in lines.withLockedValue { $0.append(line) } }
        var logger = Logger(label: "tsidp") { label in
            JSONLogHandler(label: label, metadataProvider: RequestLog.metadataProvider, output: output)
        }
        logger.logLevel = .debug
        return (logger, lines)
    }

    static func parse(_ line: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("one object per line: time, level, logger, message, then every metadata value")
    func fields() throws {
        let (logger, lines) = Self.logger()
        logger.warning(
            "client created",
            metadata: [
                "client_id": "abc", "count": "\(3)", "uris": ["https://a.example.com", "https://b.example.com"],
                "nested": ["k": "v"], "message": "clash",
            ])
        let written = lines.withLockedValue { $0 }
        #expect(written.count == 1)
        #expect(written[0].hasSuffix("}\n") && written[0].filter { $0 == "\n" }.count == 1)
        let object = try Self.parse(written[0])
        #expect(object["level"] as? String == "warning")
        #expect(object["logger"] as? String == "tsidp")
        #expect(object["message"] as? String == "client created")
        #expect(object["_message"] as? String == "clash")
        #expect(object["client_id"] as? String == "abc")
        #expect(object["uris"] as? [String] == ["https://a.example.com", "https://b.example.com"])
        #expect((object["nested"] as? [String: String]) == ["k": "v"])
        let time = try #require(object["time"] as? String)
        #expect(time.count == 24 && time.hasSuffix("Z") && time.contains("T"))
    }

    @Test("no value can end the line or hide characters: newlines, quotes and invisible characters are escaped")
    func escaping() throws {
        let (logger, lines) = Self.logger()
        let hostile = "evil\"}\n{\"level\":\"error\u{202E}\u{0007}\u{1F600}"
        logger.info("\(hostile)", metadata: ["name": "\(hostile)"])
        let written = lines.withLockedValue { $0 }
        #expect(written.count == 1)
        #expect(!written[0].dropLast().contains("\n"))
        #expect(!written[0].contains("\u{202E}"))
        #expect(written[0].contains("\\u202e"))
        let object = try Self.parse(written[0])
        #expect(object["message"] as? String == hostile)
        #expect(object["name"] as? String == hostile)
        #expect(object["level"] as? String == "info")
    }

    @Test("lines logged while a request is answered carry its request_id")
    func requestID() async throws {
        let (logger, lines) = Self.logger()
        await RequestLog.$id.withValue("0123456789abcdef0123456789abcdef") {
            logger.info("inside")
        }
        logger.info("outside")
        let written = lines.withLockedValue { $0 }
        #expect(try Self.parse(written[0])["request_id"] as? String == "0123456789abcdef0123456789abcdef")
        #expect(try Self.parse(written[1])["request_id"] == nil)
    }

    @Test("the timestamp is UTC with milliseconds")
    func timestamp() {
        #expect(JSONLogHandler.timestamp(Date(timeIntervalSince1970: 1_796_015_009.416)) == "2026-11-30T05:03:29.416Z")
        #expect(JSONLogHandler.timestamp(Date(timeIntervalSince1970: 0.005)) == "1970-01-01T00:00:00.005Z")
    }
}
