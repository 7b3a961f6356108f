package shop.interop;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.Test;
import org.springframework.kafka.support.KafkaHeaders;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static shop.interop.Interop.*;

/** Dead letters, read the way Spring's tooling reads its own. */
class DeadLetterTest {

    @Test
    void poison_is_dead_lettered_with_springs_headers_and_the_trace_context() throws Exception {
        String key = id("poison");
        byte[] value = "{not json".getBytes(StandardCharsets.UTF_8);
        String traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        try (Reader dead = new Reader(orderTopic() + ".DLT"); Reader source = new Reader(orderTopic())) {
            sendRaw(orderTopic(), key, value, Map.of("traceparent", traceparent));
            ConsumerRecord<String, byte[]> original = source.await(r -> key.equals(r.key()), "the poison as sent");
            ConsumerRecord<String, byte[]> letter = dead.await(r -> key.equals(r.key()), "the dead letter");
            assertArrayEquals(value, letter.value(), "the original value is kept");
            assertEquals(orderTopic(), header(letter, KafkaHeaders.DLT_ORIGINAL_TOPIC));
            byte[] partition = headerBytes(letter, KafkaHeaders.DLT_ORIGINAL_PARTITION);
            assertNotNull(partition);
            assertEquals(original.partition(), ByteBuffer.wrap(partition).getInt(), "a 4-byte partition");
            byte[] offset = headerBytes(letter, KafkaHeaders.DLT_ORIGINAL_OFFSET);
            assertNotNull(offset);
            assertEquals(original.offset(), ByteBuffer.wrap(offset).getLong(), "an 8-byte offset");
            assertEquals(original.timestamp(), ByteBuffer.wrap(headerBytes(letter, KafkaHeaders.DLT_ORIGINAL_TIMESTAMP)).getLong());
            assertEquals("CreateTime", header(letter, KafkaHeaders.DLT_ORIGINAL_TIMESTAMP_TYPE));
            assertFalse(header(letter, KafkaHeaders.DLT_EXCEPTION_FQCN).isBlank());
            assertTrue(header(letter, KafkaHeaders.DLT_EXCEPTION_MESSAGE).contains("not JSON"),
                header(letter, KafkaHeaders.DLT_EXCEPTION_MESSAGE));
            assertNotNull(header(letter, KafkaHeaders.DLT_ORIGINAL_CONSUMER_GROUP));
            assertEquals(traceparent, header(letter, "traceparent"));
        }
    }

    @Test
    void an_unreadable_order_is_dead_lettered_and_answered_invalid() throws Exception {
        String order = id("o");
        byte[] value = JSON.writeValueAsBytes(Map.of("eventType", "OrderCreatedEvent", "orderId", order,
            "items", List.of(Map.of("productId", id("p"), "quantity", 0))));
        try (Reader dead = new Reader(orderTopic() + ".DLT"); Reader outcomes = new Reader(inventoryTopic())) {
            sendRaw(orderTopic(), order, value, Map.of());
            JsonNode answer = json(outcome(outcomes, order));
            assertEquals("StockReservationFailedEvent", answer.get("eventType").asText());
            assertEquals("INVALID_ORDER", answer.get("reason").asText());
            assertTrue(answer.get("detail").asText().contains("items[0].quantity"), answer.toString());
            ConsumerRecord<String, byte[]> letter = dead.await(r -> order.equals(r.key()), "the dead letter");
            assertTrue(header(letter, KafkaHeaders.DLT_EXCEPTION_MESSAGE).contains("items[0].quantity"));
        }
    }
}
