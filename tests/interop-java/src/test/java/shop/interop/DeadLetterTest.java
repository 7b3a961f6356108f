package shop.interop;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;

import com.shop.order.event.Item;
import com.shop.order.event.OrderCreatedEvent;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.junit.jupiter.api.Test;
import org.springframework.kafka.support.KafkaHeaders;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static shop.interop.Interop.*;

/** `<topic>.DLT`, read the way Spring's dead-letter tooling reads what `DeadLetterPublishingRecoverer` wrote. */
class DeadLetterTest {

    @Test
    void poison_is_dead_lettered_with_springs_headers_in_springs_encodings() throws Exception {
        String key = unique("poison");
        String value = "{not json";
        try (Reader<byte[]> dead = read(orderTopic() + ".DLT")) {
            RecordMetadata sent = sendRaw(orderTopic(), key, value, Map.of());
            ConsumerRecord<String, byte[]> letter = dead.next(key, "the dead letter of " + key);
            assertEquals(value, text(letter.value()), "the original value, byte for byte");
            assertNotNull(header(letter, "dlt-error"), "our own reason header");

            assertEquals(orderTopic(), header(letter, KafkaHeaders.DLT_ORIGINAL_TOPIC));
            assertEquals(sent.partition(), ByteBuffer.wrap(bytes(letter, KafkaHeaders.DLT_ORIGINAL_PARTITION, 4)).getInt());
            assertEquals(sent.offset(), ByteBuffer.wrap(bytes(letter, KafkaHeaders.DLT_ORIGINAL_OFFSET, 8)).getLong());
            assertEquals(sent.timestamp(), ByteBuffer.wrap(bytes(letter, KafkaHeaders.DLT_ORIGINAL_TIMESTAMP, 8)).getLong());
            assertEquals("CreateTime", header(letter, KafkaHeaders.DLT_ORIGINAL_TIMESTAMP_TYPE));
            assertNonEmpty(letter, KafkaHeaders.DLT_ORIGINAL_CONSUMER_GROUP);
            assertNonEmpty(letter, KafkaHeaders.DLT_EXCEPTION_FQCN);
            assertNonEmpty(letter, KafkaHeaders.DLT_EXCEPTION_MESSAGE);
        }
    }

    @Test
    void poison_keeps_its_trace_context_in_the_dead_letter() throws Exception {
        String key = unique("poison");
        String traceparent = traceparent();
        String tracestate = "shop=" + unique("t");
        try (Reader<byte[]> dead = read(orderTopic() + ".DLT")) {
            sendRaw(orderTopic(), key, "{not json", Map.of("traceparent", traceparent, "tracestate", tracestate));
            ConsumerRecord<String, byte[]> letter = dead.next(key, "the dead letter of " + key);
            assertEquals(traceparent, header(letter, "traceparent"));
            assertEquals(tracestate, header(letter, "tracestate"));
        }
    }

    @Test
    void an_order_with_a_zero_quantity_is_dead_lettered_and_answered_invalid() throws Exception {
        String order = unique("o");
        try (Reader<byte[]> dead = read(orderTopic() + ".DLT"); Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendSpring(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(unique("p"), 0))));
            // The order service is waiting on this order: it gets an answer, not only a dead letter.
            Outcome failed = outcome(outcomes, order);
            assertEquals("StockReservationFailedEvent", failed.type(), failed.json().toString());
            assertEquals("INVALID_ORDER", failed.text("reason"));
            assertFalse(failed.text("detail") == null || failed.text("detail").isBlank(), "detail says what is wrong");
            ConsumerRecord<String, byte[]> letter = dead.next(order, "the dead letter of order " + order);
            assertEquals(orderTopic(), header(letter, KafkaHeaders.DLT_ORIGINAL_TOPIC));
            assertNonEmpty(letter, KafkaHeaders.DLT_EXCEPTION_MESSAGE);
        }
    }

    /** A header Spring decodes as a fixed-width big-endian number: present and exactly that wide. */
    private static byte[] bytes(ConsumerRecord<String, byte[]> letter, String name, int width) {
        byte[] value = headerBytes(letter, name);
        assertNotNull(value, name + " is missing");
        assertEquals(width, value.length, name + " must be " + width + " bytes, big-endian");
        return value;
    }

    private static void assertNonEmpty(ConsumerRecord<String, byte[]> letter, String name) {
        String value = header(letter, name);
        assertFalse(value == null || value.isBlank(), name + " is missing or empty");
    }
}
